"""The service executor: runs tasks of one service, with retries and an execution timeout.

Tasks with tags are added to the service tag engine before their first attempt and removed with
their final outcome. A delegated method registers its requester with the tag engine before it
runs; its outcome comes later from ``client.complete_delegated_task`` (or, if the method fails
for good, from the executor through the tag engine). Batched methods are run by
:class:`~infinitic.task_executor._batch.TaskBatcher`.

Async methods run on the event loop; sync methods run in a thread pool sized to the executor's
concurrency, so user code never blocks the loop. A failed attempt is retried through the
``task-retry`` topic after the delay given by the retry policy; the final outcome goes to
``task-events``, whose handler forwards it to whoever asked.
"""

from __future__ import annotations

import asyncio
import contextvars
import dataclasses
import functools
import inspect
import logging
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from infinitic.common import (
    BatchSettings,
    MethodSignature,
    NoRetry,
    RetryPolicy,
    Route,
    TaskContext,
    TopicKind,
    attempt_failure,
    batch_settings,
    deterministic_id,
    is_delegated,
    method_signature,
    method_timeout,
    public_methods,
    retry_policy,
    set_task_context,
    task_outcome_route,
    task_result_route,
    topic,
    tracing,
    workflow_command,
)
from infinitic.common.events import EventEmitter, alongside
from infinitic.common.messages import ExecuteTask, Message, Status, TaskOutcome
from infinitic.common.tag_messages import (
    AddTagToTask,
    CompleteDelegatedTask,
    RemoveTagFromTask,
    SetDelegatedTaskData,
)
from infinitic.exceptions import InvalidPayloadError, MessageTooLargeError, UnknownMethodError
from infinitic.task_executor._batch import TaskBatcher
from infinitic.task_executor._events import task_events
from infinitic.task_executor._in_context import run_in_context
from infinitic.transport import Outbox, Outgoing, Transport, encode_checked

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
        retry: the retry policy from the worker's configuration; it wins over one declared
            on the implementation (as in Infinitic), which wins over no retry.
        timeout: the execution timeout in seconds from the worker's configuration; it wins
            over one declared on the implementation's method or class.
        events: publishes the events of each handled task (None: no events).
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
        events: EventEmitter | None = None,
    ) -> None:
        self.service_name = service_name
        self._events = events
        self._impl = implementation
        self._interface = interface or type(implementation)
        self._transport = transport
        self._retry = retry
        self._timeout = timeout
        self._concurrency = concurrency
        self._threads = ThreadPoolExecutor(
            max_workers=concurrency, thread_name_prefix=f"infinitic-{service_name}"
        )
        self._tag_topic = topic(TopicKind.TASK_TAG, service_name)
        # What the declarations (decorators) say of each method of the interface, read once
        # (unknown method names, from bad messages, are not kept).
        self._public = frozenset(public_methods(self._interface))
        self._delegated: dict[str, bool] = {}
        self._timeouts: dict[str, float | None] = {}
        self._batches: dict[str, BatchSettings] = {}
        for method in self._public:
            settings = batch_settings(self._impl, method) or batch_settings(self._interface, method)
            if settings is not None:
                self._batches[method] = settings
        self._batcher = TaskBatcher(self)

    def _policy(self, method: str) -> RetryPolicy:
        return self._retry or retry_policy(self._impl, method) or NoRetry()

    def _execution_timeout(self, method: str) -> float | None:
        if self._timeout is not None:
            return self._timeout
        if method in self._timeouts:
            return self._timeouts[method]
        timeout = method_timeout(type(self._impl), method)
        if method in self._public:
            self._timeouts[method] = timeout
        return timeout

    @property
    def consumer_concurrency(self) -> int:
        """Messages the executor's consumer should take at once: at least the largest batch, as
        the tasks of a batch wait together until it is flushed."""
        sizes = [b.max_messages for b in self._batches.values()]
        return max([self._concurrency, *sizes])

    def is_delegated(self, method: str) -> bool:
        """True when ``method`` is declared delegated (on the implementation or interface)."""
        known = self._delegated.get(method)
        if known is None:
            known = is_delegated(self._impl, method) or is_delegated(self._interface, method)
            if method in self._public:
                self._delegated[method] = known
        return known

    def batch_settings(self, method: str) -> BatchSettings | None:
        """The batch settings of ``method`` (declared on the implementation or interface)."""
        return self._batches.get(method)

    async def handle(self, message: Message) -> None:
        """Run one attempt of a task and publish what follows (outcome or retry).

        Returns once what follows is published (for a batched method: once its batch's outcomes
        are), so the message is acknowledged only then.
        """
        if not isinstance(message, ExecuteTask):
            raise ValueError(f"unexpected {type(message).__name__} on task-executor")
        m = message
        delegated = self.is_delegated(m.method_name)
        if delegated:
            await self._register_delegated(m)
        elif m.retry_index == 0 and m.tags:
            await self._add_tags(m)
        settings = self.batch_settings(m.method_name)
        if settings is not None and not delegated:
            await self._batcher.submit(m, settings)
            return
        out = Outbox()
        try:
            value = await self._attempt(m, delegated)
        except Exception as e:
            self.failed(m, e, out)
        else:
            if not delegated:
                self.outcome(m, out, value=value)
        await self.send(out, [m], delegated)

    async def send(self, out: Outbox, handled: list[ExecuteTask], delegated: bool) -> None:
        """Send ``out`` and the events of the attempts of ``handled`` (if events are on)."""
        t = self._transport
        if self._events is None or not handled:
            await out.send(t)
            return
        events = task_events(self._events, handled, out, delegated, t.now(), t.max_message_bytes)
        await alongside(out.send(t), self._events.publish(events))

    async def _add_tags(self, m: ExecuteTask) -> None:
        out = Outbox()
        for tag in m.tags:
            out.add(
                self._tag_topic,
                AddTagToTask(service_name=self.service_name, tag=tag, task_id=m.task_id),
                key=tag,
            )
        await out.send(self._transport)

    async def _register_delegated(self, m: ExecuteTask) -> None:
        """Before a delegated method runs, the tag engine learns who waits for it (and its
        tags), so a completion sent from inside the method already finds it."""
        out = Outbox()
        out.add(
            self._tag_topic,
            SetDelegatedTaskData(
                service_name=self.service_name,
                task_id=m.task_id,
                method_name=m.method_name,
                requester=m.requester,
                tags=m.tags,
                meta=m.meta,
                message_id=deterministic_id(m.message_id, "delegated"),
            ),
            key=m.task_id,
        )
        await out.send(self._transport)

    def failed(self, m: ExecuteTask, e: Exception, out: Outbox) -> None:
        """Add to ``out`` what follows a failed attempt: a retry, or the final failure."""
        tracing.record_error(e)
        if isinstance(e, InvalidPayloadError | UnknownMethodError):
            logger.warning(
                "task %s.%s (%s) refused: %s", m.service_name, m.method_name, m.task_id, e
            )
            self.outcome(m, out, failure=e)
            return
        delay = self._policy(m.method_name).delay(m.retry_index, e)
        if delay is None:
            self.outcome(m, out, failure=e)
            return
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
                    "last_failure": attempt_failure(e, m.last_failure),
                    "message_id": deterministic_id(m.message_id, "retry"),
                }
            ),
            deliver_at=self._transport.now() + delay,
        )

    def method(self, m: ExecuteTask) -> tuple[MethodSignature, Any]:
        """The signature (from the interface) and the implementation's callable of a task."""
        sig = method_signature(self._interface, m.method_name, "service", self.service_name)
        fn = getattr(self._impl, m.method_name, None)
        if fn is None or not callable(fn):
            raise UnknownMethodError(
                f"service {self.service_name} implementation {type(self._impl).__name__} has no "
                f"method {m.method_name!r}"
            )
        return sig, fn

    async def _attempt(self, m: ExecuteTask, delegated: bool) -> Any:
        sig, fn = self.method(m)
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
        result = await self.invoke(m.method_name, fn, args, ctx, m.task_id)
        if delegated:
            return None  # the value comes later, from client.complete_delegated_task
        return sig.dump_result(result)

    async def invoke(
        self, method: str, fn: Any, args: list[Any], ctx: TaskContext | None, what: str
    ) -> Any:
        """Run ``fn(*args)`` (on the loop if async, else in the thread pool) with the task
        context ``ctx`` and the method's execution timeout."""
        timeout = self._execution_timeout(method)
        # A copy of the context for each run: what the code sets in its context (a library
        # binding request-scoped values) never reaches the next task this handler runs. Async
        # code runs in this task, each of its steps inside the copy (no Task of its own).
        context = contextvars.copy_context()
        context.run(set_task_context, ctx)
        if inspect.iscoroutinefunction(fn):
            run: Any = run_in_context(fn(*args), context)
        else:
            run = asyncio.get_running_loop().run_in_executor(
                self._threads, functools.partial(context.run, fn, *args)
            )
        if timeout is None:  # no scope to enter and leave
            return await run
        scope = asyncio.timeout(timeout)
        try:
            async with scope:
                return await run
        except TimeoutError:
            if not scope.expired():
                raise  # the user code itself raised TimeoutError
            raise TaskTimeoutError(
                f"task {self.service_name}.{method} ({what}) exceeded its "
                f"execution timeout of {timeout}s"
            ) from None

    def outcome(
        self,
        m: ExecuteTask,
        out: Outbox,
        *,
        value: Any = None,
        failure: BaseException | None = None,
    ) -> None:
        """Add to ``out`` the final outcome of a task, and the removal of its tags."""
        info = attempt_failure(failure, m.last_failure) if failure is not None else None
        if self.is_delegated(m.method_name):
            # the tag engine holds the task: it forwards the failure and forgets the task
            out.add(
                self._tag_topic,
                CompleteDelegatedTask(
                    service_name=self.service_name,
                    task_id=m.task_id,
                    status="failed",
                    failure=info,
                    message_id=deterministic_id(m.message_id, "delegated-failed"),
                ),
                key=m.task_id,
            )
            return
        outcome_id = deterministic_id(m.message_id, "outcome")
        status: Status = "completed" if failure is None else "failed"
        r = m.requester
        route: Route | None
        if workflow_command(r) is not None:
            # straight to the requesting workflow's state engine (no relay hop), as the
            # CommandResult that task_outcome_route makes of the TaskOutcome (not built)
            route = task_result_route(
                r,
                outcome_id,
                task_id=m.task_id,
                service_name=m.service_name,
                method_name=m.method_name,
                status=status,
                value=value,
                cause=info,
            )
        else:
            outcome = TaskOutcome(
                task_id=m.task_id,
                service_name=m.service_name,
                method_name=m.method_name,
                status=status,
                value=value,
                failure=info,
                requester=r,
                tags=m.tags,
                meta=m.meta,
                message_id=outcome_id,
            )
            route = task_outcome_route(outcome)  # a client's, or nobody's
        if route is not None:
            item = Outgoing(route[0], route[1], key=route[2])
            if failure is None:
                try:  # encoded once, here: a result too large fails its task
                    item = dataclasses.replace(item, data=encode_checked(self._transport, item))
                except MessageTooLargeError as e:
                    what = f"the result of task {m.service_name}.{m.method_name} ({m.task_id})"
                    too_large = MessageTooLargeError(what, e.topic, e.size, e.limit)
                    logger.warning("task failed: %s", too_large)
                    self.outcome(m, out, failure=too_large)
                    return
            out.items.append(item)
        for tag in m.tags:
            out.add(
                self._tag_topic,
                RemoveTagFromTask(service_name=self.service_name, tag=tag, task_id=m.task_id),
                key=tag,
            )

    async def close(self) -> None:
        """Flush the pending batches, wait for running sync methods and release the thread
        pool; idempotent."""
        await self._batcher.close()
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
    """Handles ``task-events:<service>``: forwards each outcome to whoever asked (executors send
    outcomes to requesters directly; this drains what reaches the topic)."""

    def __init__(self, service_name: str, transport: Transport) -> None:
        self.service_name = service_name
        self._transport = transport

    async def handle(self, message: Message) -> None:
        if not isinstance(message, TaskOutcome):
            raise ValueError(f"unexpected {type(message).__name__} on task-events")
        route = task_outcome_route(message)
        if route is not None:
            out = Outbox()
            out.add(route[0], route[1], key=route[2])
            await out.send(self._transport)
