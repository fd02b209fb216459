"""The service executor: runs tasks of one service, with retries and an execution timeout.

Async methods run on the event loop; sync methods run in a thread pool sized to the executor's
concurrency, so user code never blocks the loop. A failed attempt is retried through the
``task-retry`` topic after the delay given by the retry policy; the final outcome goes to
``task-events``, whose handler forwards it to whoever asked.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import inspect
import logging
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from infinitic.common import (
    NoRetry,
    RetryPolicy,
    TaskContext,
    TopicKind,
    deterministic_id,
    failure_from_exception,
    method_signature,
    method_timeout,
    response_topic,
    retry_policy,
    set_task_context,
    topic,
)
from infinitic.common._errors import InvalidPayloadError, UnknownMethodError
from infinitic.common._failures import FailureInfo
from infinitic.common._messages import CommandResult, ExecuteTask, Message, TaskOutcome
from infinitic.transport import Outbox, Transport

logger = logging.getLogger("infinitic.task_executor")


class TaskTimeoutError(TimeoutError):
    """An attempt ran longer than the execution timeout of its method."""


class ServiceExecutor:
    """Executes the tasks of one service on an implementation object.

    Args:
        service_name: the service's wire name.
        implementation: the object whose methods run the tasks.
        interface: the service's contract (type hints for payloads); defaults to the
            implementation's class.
        transport: where outcomes and retries are published.
        concurrency: size of the thread pool for sync methods.
        retry: default retry policy (a policy declared on the implementation wins).
        timeout: default execution timeout in seconds (one declared on the method wins).
    """

    def __init__(
        self,
        service_name: str,
        implementation: object,
        *,
        transport: Transport,
        interface: type | None = None,
        concurrency: int = 1,
        retry: RetryPolicy | None = None,
        timeout: float | None = None,
    ) -> None:
        self.service_name = service_name
        self._impl = implementation
        self._interface = interface or type(implementation)
        self._transport = transport
        self._retry = retry
        self._timeout = timeout
        self._threads = ThreadPoolExecutor(
            max_workers=concurrency, thread_name_prefix=f"infinitic-{service_name}"
        )

    def _policy(self, method: str) -> RetryPolicy:
        return retry_policy(self._impl, method) or self._retry or NoRetry()

    def _execution_timeout(self, method: str) -> float | None:
        return method_timeout(type(self._impl), method) or self._timeout

    async def handle(self, message: Message) -> None:
        """Run one attempt of a task and publish what follows (outcome or retry)."""
        if not isinstance(message, ExecuteTask):
            raise ValueError(f"unexpected {type(message).__name__} on task-executor")
        m = message
        out = Outbox()
        try:
            value = await self._attempt(m)
        except (InvalidPayloadError, UnknownMethodError) as e:
            logger.warning(
                "task %s.%s (%s) refused: %s", m.service_name, m.method_name, m.task_id, e
            )
            self._outcome(m, out, failure=e)
        except Exception as e:
            delay = self._policy(m.method_name).delay(m.retry_index, e)
            if delay is None:
                self._outcome(m, out, failure=e)
            else:
                logger.info(
                    "task %s.%s (%s) attempt %d failed (%s), retrying in %.3fs",
                    m.service_name,
                    m.method_name,
                    m.task_id,
                    m.retry_index + 1,
                    e,
                    delay,
                )
                out.add(
                    topic(TopicKind.TASK_RETRY, self.service_name),
                    m.model_copy(
                        update={
                            "retry_index": m.retry_index + 1,
                            "last_failure": failure_from_exception(e),
                            "message_id": deterministic_id(m.message_id, "retry"),
                        }
                    ),
                    deliver_at=self._transport.now() + delay,
                )
        else:
            self._outcome(m, out, value=value)
        await out.send(self._transport)

    async def _attempt(self, m: ExecuteTask) -> Any:
        sig = method_signature(self._interface, m.method_name, "service", self.service_name)
        fn = getattr(self._impl, m.method_name, None)
        if fn is None or not callable(fn):
            raise UnknownMethodError(
                f"service {self.service_name} implementation {type(self._impl).__name__} has no "
                f"method {m.method_name!r}"
            )
        args = sig.load_args(m.method_args)
        ctx = TaskContext(
            task_id=m.task_id,
            service_name=m.service_name,
            method_name=m.method_name,
            retry_index=m.retry_index,
            retry_sequence=m.retry_sequence,
            tags=frozenset(m.tags),
            meta=dict(m.meta),
            workflow_id=m.requester.workflow_id,
            workflow_name=m.requester.workflow_name,
        )
        timeout = self._execution_timeout(m.method_name)
        context = contextvars.copy_context()
        context.run(set_task_context, ctx)
        if inspect.iscoroutinefunction(fn):
            run: Any = asyncio.get_running_loop().create_task(fn(*args), context=context)
        else:
            run = asyncio.get_running_loop().run_in_executor(
                self._threads, functools.partial(context.run, fn, *args)
            )
        try:
            async with asyncio.timeout(timeout):
                result = await run
        except TimeoutError:
            if run.done() and not run.cancelled() and isinstance(run.exception(), TimeoutError):
                raise  # the user code itself raised TimeoutError
            raise TaskTimeoutError(
                f"task {self.service_name}.{m.method_name} (id {m.task_id}) exceeded its "
                f"execution timeout of {timeout}s"
            ) from None
        return sig.dump_result(result)

    def _outcome(
        self,
        m: ExecuteTask,
        out: Outbox,
        *,
        value: Any = None,
        failure: BaseException | None = None,
    ) -> None:
        out.add(
            topic(TopicKind.TASK_EVENTS, self.service_name),
            TaskOutcome(
                task_id=m.task_id,
                service_name=m.service_name,
                method_name=m.method_name,
                status="completed" if failure is None else "failed",
                value=value,
                failure=failure_from_exception(failure) if failure is not None else None,
                requester=m.requester,
                tags=m.tags,
                meta=m.meta,
                message_id=deterministic_id(m.message_id, "outcome"),
            ),
        )

    async def close(self) -> None:
        """Wait for running sync methods and release the thread pool."""
        await asyncio.get_running_loop().run_in_executor(
            None, functools.partial(self._threads.shutdown, wait=True)
        )


class TaskRetryHandler:
    """Handles ``task-retry:<service>``: due retries go back to the executor topic."""

    def __init__(self, service_name: str, transport: Transport) -> None:
        self.service_name = service_name
        self._transport = transport

    async def handle(self, message: Message) -> None:
        if not isinstance(message, ExecuteTask):
            raise ValueError(f"unexpected {type(message).__name__} on task-retry")
        out = Outbox()
        out.add(topic(TopicKind.TASK_EXECUTOR, self.service_name), message)
        await out.send(self._transport)


class TaskEventHandler:
    """Handles ``task-events:<service>``: forwards each outcome to whoever asked."""

    def __init__(self, service_name: str, transport: Transport) -> None:
        self.service_name = service_name
        self._transport = transport

    async def handle(self, message: Message) -> None:
        if not isinstance(message, TaskOutcome):
            raise ValueError(f"unexpected {type(message).__name__} on task-events")
        m = message
        r = m.requester
        out = Outbox()
        failure = _task_failure(m) if m.failure is not None else None
        if r.workflow_name and r.workflow_id and r.command_id:
            out.add(
                topic(TopicKind.WORKFLOW_ENGINE, r.workflow_name),
                CommandResult(
                    workflow_name=r.workflow_name,
                    workflow_id=r.workflow_id,
                    command_id=r.command_id,
                    status=m.status,
                    value=m.value,
                    failure=failure,
                    message_id=deterministic_id(m.message_id, "forward"),
                ),
                key=r.workflow_id,
            )
        elif r.client_name:
            out.add(response_topic(r.client_name), m)
        await out.send(self._transport)


def _task_failure(m: TaskOutcome) -> FailureInfo:
    """The failure seen by the requester: a task failure naming service, method and task id,
    caused by what the task raised."""
    return FailureInfo(
        kind="task_failed",
        service_name=m.service_name,
        method_name=m.method_name,
        id=m.task_id,
        cause=m.failure,
    )
