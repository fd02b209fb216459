"""How a worker starts the engines of its roles and subscribes them to their topics: a part
of :class:`~infinitic.worker.InfiniticWorker`, kept apart for its length."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from infinitic.common import ENGINE_SUBSCRIPTION, RetryPolicy, TopicKind, topic
from infinitic.common.events import EventTopic
from infinitic.common.messages import ExecuteWorkflowTask, Message, WorkflowMessage
from infinitic.storage import KeyValueStorage, Storage
from infinitic.task_executor import ServiceExecutor, TaskEventHandler, TaskRetryHandler
from infinitic.task_tag import TaskTagEngine
from infinitic.transport import (
    Consumer,
    ConsumerSettings,
    Outbox,
    SubscriptionType,
    Transport,
    TransportMessage,
)
from infinitic.worker._dead_letters import tell_waiters
from infinitic.worker._events import WorkerEvents
from infinitic.worker._handling import tracked_handler
from infinitic.worker._local_results import LocalResults
from infinitic.worker._log_context import nested_handling
from infinitic.worker._metered_storage import metered_storage
from infinitic.worker._metrics import WorkerMetrics
from infinitic.worker._roles import ServiceRoles, WorkflowRoles
from infinitic.workflow_engine import (
    CheckMode,
    StorageHistoryLoader,
    WorkflowDelayHandler,
    WorkflowEventHandler,
    WorkflowExecutor,
    WorkflowStateEngine,
    WorkflowTaskEventHandler,
)
from infinitic.workflow_tag import WorkflowTagEngine

#: The subscription of every engine of a worker on its topics.
SUBSCRIPTION = ENGINE_SUBSCRIPTION


class EngineStarting:
    """The engines of a worker's services and workflows, built and subscribed when it starts
    (InfiniticWorker sets every attribute below in its ``__init__``)."""

    transport: Transport
    storage: Storage
    metrics: WorkerMetrics | None
    events: WorkerEvents
    _max_redeliveries: int
    _redelivery_delay: float
    _in_flight: dict[str, int]
    _handler_tasks: set[asyncio.Task[Any]]
    _consumers: list[Consumer]
    _executors: list[ServiceExecutor]
    _workflow_executors: dict[str, WorkflowExecutor]
    _workflow_options: dict[str, tuple[CheckMode | None, int | None]]
    _cache_size: int
    _check_mode: CheckMode
    _code_options: tuple[str, float | None, bool | None]
    _task_options: dict[str, tuple[float | None, RetryPolicy | None]]
    _inline_workflow_tasks: bool
    _local_results: LocalResults | None
    _history_chunk_steps: int

    def _settings(self, type_: SubscriptionType, concurrency: int) -> ConsumerSettings:
        return ConsumerSettings(
            type=type_,
            concurrency=concurrency,
            max_redeliveries=self._max_redeliveries,
            redelivery_delay=self._redelivery_delay,
            on_dead_letter=self._tell_waiters,
        )

    async def _tell_waiters(self, message: TransportMessage, reason: str) -> None:
        if self.metrics is not None:
            self.metrics.dead_lettered(message.topic)
        await tell_waiters(self.transport, message, reason)

    async def _subscribe(
        self,
        kind: TopicKind,
        entity: str,
        handle: Callable[[Any], Awaitable[None]],
        concurrency: int,
    ) -> None:
        type_ = SubscriptionType.KEY_SHARED if kind.keyed else SubscriptionType.SHARED
        name = topic(kind, entity)
        consumer = await self.transport.subscribe(
            name,
            SUBSCRIPTION,
            self._tracked(name, handle),
            self._settings(type_, concurrency),
        )
        self._consumers.append(consumer)

    def _tracked(
        self, component: str, fn: Callable[[Any], Awaitable[None]]
    ) -> Callable[[TransportMessage], Awaitable[None]]:
        """The handler of a subscription, counted while it runs (see :meth:`in_flight`)."""
        meter = self.metrics.topic_meter(component) if self.metrics is not None else None
        return tracked_handler(component, fn, self._in_flight, self._handler_tasks, meter)

    async def _start_service(self, s: ServiceRoles) -> None:
        if s.executor:
            assert s.implementation is not None  # add_service ensures it
            executor = ServiceExecutor(
                s.name,
                s.implementation,
                # results for this worker's own state engines go to them directly
                transport=self._local_results or self.transport,
                interface=s.interface,
                concurrency=s.concurrency,
                retry=s.retry,
                timeout=s.timeout,
                events=self.events.emitter(EventTopic.SERVICE_EXECUTOR, s.name),
            )
            self._executors.append(executor)
            await self._subscribe(
                TopicKind.TASK_EVENTS,
                s.name,
                TaskEventHandler(s.name, self.transport).handle,
                s.concurrency,
            )
            await self._subscribe(
                TopicKind.TASK_RETRY,
                s.name,
                TaskRetryHandler(s.name, self.transport).handle,
                s.concurrency,
            )
        if s.tag_engine:
            storage = self._measured(s.tag_engine_storage or self.storage)
            tag_engine = TaskTagEngine(
                s.name,
                self.transport,
                storage.key_set,
                storage.key_value,
                interface=s.interface,
            )
            await self._subscribe(
                TopicKind.TASK_TAG, s.name, tag_engine.handle, s.tag_engine_concurrency
            )
        if s.executor:
            await self._subscribe(
                TopicKind.TASK_EXECUTOR, s.name, executor.handle, executor.consumer_concurrency
            )

    def _measured(self, storage: Storage, workflow: str | None = None) -> Storage:
        """``storage`` as given to engines: timed with metrics (a workflow's instances counted
        on its state engine's)."""
        if self.metrics is None:
            return storage
        return metered_storage(storage, self.metrics, workflow)

    def _option(self, workflow_name: str, index: int, default: Any) -> Any:
        options = self._workflow_options.get(workflow_name, (None, None))
        return default if options[index] is None else options[index]

    def _code_kwargs(self, workflow_name: str) -> dict[str, Any]:
        """The options of a workflow's executor about running its code."""
        isolation, blocking, strict = self._code_options
        timeout, retry = self._task_options.get(workflow_name, (None, None))
        kwargs: dict[str, Any] = {
            "isolation": isolation,
            "blocking_threshold": blocking,
            "strict_check": strict,
            "task_retry": retry,
        }
        if timeout is not None:
            kwargs["task_timeout"] = timeout
        return kwargs

    async def _start_workflow(self, w: WorkflowRoles) -> None:
        n = w.name
        states = self._measured(w.state_engine_storage or self.storage, n).key_value
        executor: WorkflowExecutor | None = None
        if w.executor:
            executor = WorkflowExecutor(
                {n: w.classes},
                cache_size=self._option(n, 1, self._cache_size),
                check_mode=self._option(n, 0, self._check_mode),
                history=StorageHistoryLoader(states),
                **self._code_kwargs(n),
            )
            self._workflow_executors[n] = executor
        if w.state_engine:
            # Workflow tasks run inline only with this worker's own executor of the workflow;
            # else they go through workflow-task-executor to the workers that run it.
            inline = executor if self._inline_workflow_tasks else None
            await self._start_state_engine(w, states, inline)
        if executor is not None:
            await self._start_workflow_executor(w, executor)
        if w.tag_engine:
            key_set = self._measured(w.tag_engine_storage or self.storage).key_set
            tag_engine = WorkflowTagEngine(n, self.transport, key_set)
            await self._subscribe(
                TopicKind.WORKFLOW_TAG, n, tag_engine.handle, w.tag_engine_concurrency
            )

    async def _start_state_engine(
        self, w: WorkflowRoles, states: KeyValueStorage, executor: WorkflowExecutor | None
    ) -> None:
        t = self.transport
        n = w.name
        engine = WorkflowStateEngine(
            n,
            t,
            states,
            history_chunk_steps=self._history_chunk_steps,
            executor=executor,
            events=self.events.emitter(EventTopic.WORKFLOW_STATE, n),
        )

        async def run_engine(message: Message) -> None:
            if not isinstance(message, WorkflowMessage) or message.workflow_name != n:
                raise ValueError(
                    f"unexpected {type(message).__name__} for the state engine of workflow {n}"
                    f" (workflow {getattr(message, 'workflow_name', None)!r})"
                )
            await engine.handle(message)

        se = w.state_engine_concurrency
        await self._subscribe(TopicKind.WORKFLOW_EVENTS, n, WorkflowEventHandler(n, t).handle, se)
        await self._subscribe(TopicKind.WORKFLOW_ENGINE, n, run_engine, se)
        if self._local_results is not None:  # results of this worker's service executors
            name = topic(TopicKind.WORKFLOW_ENGINE, n)
            tracked = self._tracked(name, run_engine)

            async def run_local(message: TransportMessage) -> None:
                with nested_handling():  # the service executor's message stays the context
                    await tracked(message)

            self._local_results.route(name, run_local)
        # Outcomes published there by executors of an earlier version.
        await self._subscribe(
            TopicKind.WORKFLOW_TASK_EVENTS, n, WorkflowTaskEventHandler(n, t).handle, se
        )
        await self._subscribe(TopicKind.WORKFLOW_DELAY, n, WorkflowDelayHandler(n, t).handle, se)
        # The state engine takes commands itself: the command handler would only forward them.
        await self._subscribe(TopicKind.WORKFLOW_CMD, n, run_engine, se)

    async def _start_workflow_executor(self, w: WorkflowRoles, executor: WorkflowExecutor) -> None:
        n = w.name

        async def execute(message: Message) -> None:
            if not isinstance(message, ExecuteWorkflowTask):
                raise ValueError(f"unexpected {type(message).__name__} on workflow-task-executor")
            result = await executor.execute(message)
            if result is not None:  # straight to the state engine, which starts its commands
                out = Outbox()
                out.add(topic(TopicKind.WORKFLOW_ENGINE, n), result, key=result.workflow_id)
                await self.events.send(out, self.events.workflow_task(message, result))

        await self._subscribe(TopicKind.WORKFLOW_TASK_EXECUTOR, n, execute, w.concurrency)
