"""The handler a worker gives each subscription: decodes the message, makes it the log
context, counts it in flight, with tracing handles it in a span continuing the trace its
properties carry, and with metrics measures it."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from infinitic.common import decode_message, tracing
from infinitic.common.messages import ExecuteTask, Message
from infinitic.transport import RetryLater, TransportMessage
from infinitic.worker._log_context import enter_handling
from infinitic.worker._metrics import TopicMeter

logger = logging.getLogger("infinitic.worker")

Handler = Callable[[TransportMessage], Awaitable[None]]

#: The component named in span names, by topic prefix (the others: the prefix in words).
_COMPONENTS = {"workflow-cmd": "workflow", "workflow-engine": "workflow"}


def component_of(topic: str) -> str:
    """What handles the messages of a (logical) topic, in words: ``workflow`` for a state
    engine's topics, ``workflow tag``, ``task executor``..."""
    prefix = topic.partition(":")[0]
    return _COMPONENTS.get(prefix) or prefix.replace("-", " ")


async def _traced(
    fn: Callable[[Message], Awaitable[None]],
    decoded: Message,
    message: TransportMessage,
    topic: str,
) -> None:
    """Run ``fn`` in a consumer span continuing the trace of ``message``'s properties."""
    component = component_of(topic)
    with tracing.handling(message.properties, decoded, topic, component, (RetryLater,)):
        await fn(decoded)


def tracked_handler(
    topic: str,
    fn: Callable[[Message], Awaitable[None]],
    in_flight: dict[str, int],
    tasks: set[asyncio.Task[Any]],
    meter: TopicMeter | None,
) -> Handler:
    """The handler of a subscription to ``topic`` running ``fn`` on each decoded message,
    counted in ``in_flight[topic]`` and its task kept in ``tasks`` while it runs.

    A failure is logged once by the transport (one line, with the message's ids from the log
    context); its stack trace only here, at DEBUG.
    """
    if meter is None:

        async def handle(message: TransportMessage) -> None:
            task = asyncio.current_task()
            in_flight[topic] = in_flight.get(topic, 0) + 1
            if task is not None:
                tasks.add(task)
            context = enter_handling(topic)
            try:
                decoded = decode_message(message.data)
                context.message = decoded
                if tracing.enabled():
                    await _traced(fn, decoded, message, topic)
                else:
                    await fn(decoded)
            except RetryLater:
                raise
            except Exception:
                if logger.isEnabledFor(logging.DEBUG):
                    logger.debug("handling a message of %s failed", topic, exc_info=True)
                raise
            finally:
                in_flight[topic] -= 1
                if task is not None:
                    tasks.discard(task)

        return handle
    return _metered_handler(topic, fn, in_flight, tasks, meter)


def _metered_handler(
    topic: str,
    fn: Callable[[Message], Awaitable[None]],
    in_flight: dict[str, int],
    tasks: set[asyncio.Task[Any]],
    meter: TopicMeter,
) -> Handler:
    """:func:`tracked_handler` with the measures of ``meter`` (kept apart so that a worker
    without metrics runs no metric code at all)."""
    timed_tasks = meter.task_seconds is not None

    async def handle(message: TransportMessage) -> None:
        task = asyncio.current_task()
        in_flight[topic] = in_flight.get(topic, 0) + 1
        if task is not None:
            tasks.add(task)
        context = enter_handling(topic)
        meter.in_flight += 1
        if message.redelivery_count:
            meter.redeliveries += 1
        start = time.perf_counter()
        decoded: Message | None = None
        try:
            decoded = decode_message(message.data)
            context.message = decoded
            if tracing.enabled():
                await _traced(fn, decoded, message, topic)
            else:
                await fn(decoded)
        except RetryLater:
            meter.retry_later += 1
            raise
        except Exception:
            meter.failures += 1
            if logger.isEnabledFor(logging.DEBUG):
                logger.debug("handling a message of %s failed", topic, exc_info=True)
            raise
        finally:
            elapsed = time.perf_counter() - start
            in_flight[topic] -= 1
            if task is not None:
                tasks.discard(task)
            meter.in_flight -= 1
            meter.handled += 1
            meter.seconds.observe(elapsed)
            if timed_tasks and isinstance(decoded, ExecuteTask):
                meter.task_timer(decoded.method_name).observe(elapsed)

    return handle
