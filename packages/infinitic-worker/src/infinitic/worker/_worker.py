"""InfiniticWorker: runs the engines of registered services and workflows on a transport."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable, Callable, Mapping
from types import TracebackType
from typing import Any, Protocol, Self

from infinitic.client import InfiniticClient
from infinitic.common import (
    RetryPolicy,
    check_entity_name,
    entity_name,
    public_methods,
    workflow_version,
)
from infinitic.exceptions import ConfigurationError
from infinitic.storage import Storage
from infinitic.task_executor import ServiceExecutor
from infinitic.transport import (
    Consumer,
    InMemoryTransport,
    Transport,
)
from infinitic.worker._config import InfiniticConfig, load_config
from infinitic.worker._config_events import EventListenerConfig
from infinitic.worker._engines import EngineStarting
from infinitic.worker._events import WorkerEvents
from infinitic.worker._local_results import LocalResults
from infinitic.worker._metrics import WorkerMetrics
from infinitic.worker._preflight import storage_check
from infinitic.worker._roles import (
    ServiceRoles,
    WorkflowRoles,
    check_concurrency,
    check_seconds,
    check_some_role,
    executor_role,
)
from infinitic.worker._shutdown import drain, serve_until_signal
from infinitic.workflow_engine import (
    CheckMode,
    Isolation,
    WorkflowExecutor,
)
from infinitic.workflows import Workflow

logger = logging.getLogger("infinitic.worker")


class Companion(Protocol):
    """Something that lives as long as a worker (see :meth:`InfiniticWorker.add_companion`)."""

    async def start(self) -> None: ...

    async def close(self) -> None: ...


class InfiniticWorker(EngineStarting):
    """Runs services and workflows: consumes their topics and drives their engines.

    Args:
        transport: the broker connection (shared with clients).
        storage: where workflow states (and tags) live.
        name: this worker's name (logs).
        workflow_cache_size: live workflow instances kept in memory (0: replay every time).
        check_mode: how replayed workflow code is compared with its history.
        max_redeliveries: failed deliveries of a message before it is dead-lettered.
        redelivery_delay: seconds before a failed message is delivered again.
        history_chunk_steps: settled steps of a workflow's history gathered in its state before
            they are moved to a chunk stored apart (a step then costs the same however long the
            history; 0 keeps the whole history in the state).
        inline_workflow_tasks: the state engine of a workflow runs its workflow tasks itself
            with this worker's executor of that workflow, in the cycle that dispatches them, so
            a task and its outcome never cross the broker and the state is stored once for both
            (False: every workflow task goes through the ``workflow-task-executor`` topic).
        local_results: a result of this worker's service executors for a workflow whose state
            engine runs in this worker is handed to that engine directly, not through the
            broker (the executor acknowledges its task once the engine has stored it; a result
            the engine cannot take at once is published as usual); None: on unless the
            transport keeps messages in this process anyway
            (:class:`~infinitic.transport.InMemoryTransport`). A task then stays
            unacknowledged while the engine's cycle runs (about a millisecond more than the
            broker's receipt took): a crash re-runs a few more tasks (False if that matters
            more than the round trip).
        shutdown_grace_period: seconds :meth:`close` waits for in-flight messages once it
            stopped receiving; what still runs then is abandoned (unacknowledged, so the broker
            delivers it again: nothing is lost).
        events: the engines publish what they do on their events topics, for event listeners
            (False: nothing extra is sent); see :meth:`add_event_listener`.
        metrics: Prometheus metrics of this worker and their HTTP endpoint, started and
            stopped with the worker (None: no metric is measured).
        workflow_task_isolation: where workflow code runs: ``"auto"`` (on the event loop
            until one of a workflow's steps blocks past ``blocking_warning_seconds``, then on
            threads), ``"thread"`` (always on threads: the loop keeps serving other messages),
            ``"loop"`` (always on the loop); see :class:`infinitic.workflow_engine.Isolation`.
        blocking_warning_seconds: workflow code that runs this long without yielding is
            reported (a warning naming the workflow, the method and the line); None: never.
        strict_check: report calls of workflow code that are not deterministic (clock,
            random, UUID, sleep, I/O) at the call, failing the workflow task; None: when
            ``check_mode`` is strict.

    ``await worker.start()`` returns once consuming; ``worker.run()`` blocks until SIGINT or
    SIGTERM (a second signal abandons in-flight work at once); ``async with worker`` starts and
    closes it.
    """

    def __init__(
        self,
        *,
        transport: Transport,
        storage: Storage,
        name: str | None = None,
        workflow_cache_size: int = 10_000,
        check_mode: CheckMode | str = CheckMode.SIMPLE,
        max_redeliveries: int = 3,
        redelivery_delay: float = 1.0,
        history_chunk_steps: int = 64,
        inline_workflow_tasks: bool = True,
        local_results: bool | None = None,
        shutdown_grace_period: float = 30.0,
        events: bool = True,
        metrics: WorkerMetrics | None = None,
        workflow_task_isolation: str = "auto",
        blocking_warning_seconds: float | None = 0.2,
        strict_check: bool | None = None,
    ) -> None:
        self.transport = transport
        self.storage = storage
        self.name = name or "worker"
        self._cache_size = workflow_cache_size
        self._check_mode = CheckMode(check_mode)
        # workflow tasks: where their code runs, when it is reported as blocking, strict check
        if workflow_task_isolation not in {i.value for i in Isolation}:
            raise ConfigurationError(
                "workflow_task_isolation must be one of "
                f"{[i.value for i in Isolation]}, got {workflow_task_isolation!r}"
            )
        check_seconds(blocking_warning_seconds=blocking_warning_seconds)
        self._code_options = (workflow_task_isolation, blocking_warning_seconds, strict_check)
        self._task_options: dict[str, tuple[float | None, RetryPolicy | None]] = {}
        self._max_redeliveries = max_redeliveries
        self._redelivery_delay = redelivery_delay
        if (
            isinstance(history_chunk_steps, bool)
            or not isinstance(history_chunk_steps, int)
            or history_chunk_steps < 0
        ):
            raise ConfigurationError(
                f"history_chunk_steps must be an integer >= 0, got {history_chunk_steps!r}"
            )
        self._history_chunk_steps = history_chunk_steps
        if (
            isinstance(shutdown_grace_period, bool)
            or not isinstance(shutdown_grace_period, int | float)
            or shutdown_grace_period < 0
        ):
            raise ConfigurationError(
                f"shutdown_grace_period must be a number of seconds >= 0, got "
                f"{shutdown_grace_period!r}"
            )
        self.shutdown_grace_period = float(shutdown_grace_period)
        if metrics is not None and not isinstance(metrics, WorkerMetrics):
            raise ConfigurationError(f"metrics must be a WorkerMetrics, got {metrics!r}")
        self.metrics = metrics
        self.events = WorkerEvents(transport, self.name, bool(events))
        self._in_flight: dict[str, int] = {}
        self._handler_tasks: set[asyncio.Task[Any]] = set()
        self._abandon = asyncio.Event()
        self._inline_workflow_tasks = bool(inline_workflow_tasks)
        if local_results is None:
            local_results = not isinstance(transport, InMemoryTransport)
        self._local_results = LocalResults(transport) if local_results else None
        self._services: dict[str, ServiceRoles] = {}
        self._workflows: dict[str, WorkflowRoles] = {}
        self._consumers: list[Consumer] = []
        self._executors: list[ServiceExecutor] = []
        self._workflow_executors: dict[str, WorkflowExecutor] = {}
        self._client: InfiniticClient | None = None
        self._started = False
        self._closed = False
        self._lock = asyncio.Lock()
        self._workflow_options: dict[str, tuple[CheckMode | None, int | None]] = {}
        self._owned: list[Callable[[], Awaitable[None]]] = []
        self._storage_description = f"the storage ({type(storage).__name__})"
        self._checks: list[Callable[[], Awaitable[None]]] = []
        self._companions: list[Companion] = []
        self._storage_names: dict[int, str] = {}

    @classmethod
    def from_config(
        cls,
        config: Mapping[str, Any] | InfiniticConfig,
        *,
        environ: Mapping[str, str] | None = None,
    ) -> InfiniticWorker:
        """A worker built from a configuration (the shape of Infinitic's YAML file).

        The worker owns the transport (and the embedded broker, if any) and the storage it
        built, and closes them when it closes. ``INFINITIC__...`` environment variables
        override keys (``environ`` replaces ``os.environ``).

        Raises:
            ConfigurationError: a key is unknown or invalid (the message names it).
        """
        from infinitic.worker._build import build_worker

        if not isinstance(config, InfiniticConfig):
            config = load_config(config, environ=environ)
        return build_worker(cls, config)

    @classmethod
    def from_yaml(
        cls, path: str | os.PathLike[str], *, environ: Mapping[str, str] | None = None
    ) -> InfiniticWorker:
        """A worker built from a YAML file; see :meth:`from_config`."""
        return cls.from_config(load_config(path, environ=environ))

    def _own(self, *closers: Callable[[], Awaitable[None]]) -> None:
        """Close these (in order) when the worker closes."""
        self._owned.extend(closers)

    def _check_at_start(
        self, *checks: Callable[[], Awaitable[None]], storage: str | None = None
    ) -> None:
        """Run these checks (after the storage's) before starting; name the storage so."""
        self._checks.extend(checks)
        if storage is not None:
            self._storage_description = storage

    # -- registration ---------------------------------------------------------------------------

    def add_service(
        self,
        implementation: object | None = None,
        *,
        interface: type | None = None,
        name: str | None = None,
        concurrency: int = 1,
        retry: RetryPolicy | None = None,
        timeout: float | None = None,
        tag_engine_concurrency: int | None = None,
        executor: bool | None = None,
        tag_engine: bool = True,
        tag_engine_storage: Storage | None = None,
    ) -> Self:
        """Run a service: its executor (the tasks, with ``implementation``) and its tag engine.

        Args:
            implementation: runs the tasks; None runs the tag engine only (``name`` needed).
            interface: the contract the workflows call (its name and type hints are used);
                defaults to the implementation's class.
            name: overrides the service name (default: the interface's declared name).
            concurrency: tasks run at once by this worker (and messages handled at once by the
                service's event handlers).
            retry: retry policy; it wins over one declared on the implementation (as in
                Infinitic), which is used when this is None.
            timeout: execution timeout (seconds); it wins over one declared on the
                implementation's method or class, which is used when this is None.
            tag_engine_concurrency: messages handled at once by the service's tag engine
                (default: ``concurrency``).
            executor: run the tasks here (default: when an implementation is given).
            tag_engine: run the service's tag engine here (another worker may run it instead).
            tag_engine_storage: where that tag engine keeps tags and delegated tasks (default:
                the worker's storage); not closed by the worker.

        Raises:
            ConfigurationError: an invalid option, a name already registered, nothing to run,
                or an implementation lacking methods of the interface.
        """
        check_concurrency(concurrency=concurrency, tag_engine_concurrency=tag_engine_concurrency)
        if isinstance(implementation, type):
            raise ConfigurationError(
                f"add_service expects an instance, got the class {implementation.__name__}; "
                f"use add_service({implementation.__name__}())"
            )
        if implementation is None and interface is None and name is None:
            raise ConfigurationError(
                "add_service without an implementation (its tag engine only) needs the "
                "service's name (name=...) or interface"
            )
        contract = interface or type(implementation)
        service = check_entity_name(name or entity_name(contract))
        runs_executor = executor_role(executor, implementation is not None, "service", service)
        check_some_role("service", service, executor=runs_executor, tag_engine=tag_engine)
        if implementation is not None:
            missing = [
                m
                for m in public_methods(contract)
                if not callable(getattr(implementation, m, None))
            ]
            if missing:
                raise ConfigurationError(
                    f"{type(implementation).__name__} does not implement {', '.join(missing)} "
                    f"of service {service}"
                )
        self._check_new(service)
        self._services[service] = ServiceRoles(
            service,
            implementation if runs_executor else None,
            interface or (type(implementation) if implementation is not None else None),
            concurrency,
            retry,
            timeout,
            tag_engine_concurrency or concurrency,
            executor=runs_executor,
            tag_engine=bool(tag_engine),
            tag_engine_storage=tag_engine_storage,
        )
        return self

    def add_workflow(
        self,
        workflow: type | str,
        *,
        name: str | None = None,
        concurrency: int = 1,
        check_mode: CheckMode | str | None = None,
        cache_size: int | None = None,
        task_timeout: float | None = None,
        task_retry: RetryPolicy | None = None,
        state_engine_concurrency: int | None = None,
        tag_engine_concurrency: int | None = None,
        executor: bool | None = None,
        state_engine: bool = True,
        tag_engine: bool = True,
        state_engine_storage: Storage | None = None,
        tag_engine_storage: Storage | None = None,
    ) -> Self:
        """Run a workflow: its executor (its code), its state engine and its tag engine.

        Register several versions of a workflow by adding each class (``BankWorkflow``,
        ``BankWorkflow_2``, ...): new instances run the newest version, running instances stay on
        the version they started with. Given a name instead of a class, the worker runs the
        workflow's engines only (the code runs in other workers).

        A state engine runs the workflow tasks it dispatches itself when this worker also runs
        the workflow's executor (``inline_workflow_tasks``); otherwise they go through the
        ``workflow-task-executor`` topic to whichever worker runs the executor.

        Args:
            workflow: a Workflow subclass, or the workflow's name (engines only).
            concurrency: workflow tasks run at once by this worker (and the default of the
                engines' concurrencies).
            task_timeout: seconds a workflow task's code may run before it is stopped and
                fails with WorkflowTaskTimedOutError (default 60, as in Infinitic).
            task_retry: the retry policy of its failed workflow tasks; it wins over one
                declared with ``@retry`` on the workflow's method or class (default: that
                declaration, else no retry, as in Infinitic).
            state_engine_concurrency: messages handled at once by the workflow's state engine
                and the handlers that feed it (commands, events, delays).
            tag_engine_concurrency: messages handled at once by the workflow's tag engine.
            executor: run the workflow's code here (default: when a class is given).
            state_engine: run its state engine here.
            tag_engine: run its tag engine here.
            state_engine_storage: where its state engine keeps the states (default: the
                worker's storage); this worker's executor of the workflow reads histories
                there too. Not closed by the worker.
            tag_engine_storage: where its tag engine keeps tags and custom ids (default: the
                worker's storage). Not closed by the worker.

        Raises:
            ConfigurationError: an invalid option, a version or name already registered, or
                nothing to run.
        """
        check_concurrency(
            concurrency=concurrency,
            state_engine_concurrency=state_engine_concurrency,
            tag_engine_concurrency=tag_engine_concurrency,
        )
        if isinstance(workflow, str):
            wf_name = check_entity_name(name or workflow)
            classes: list[type] = []
        elif isinstance(workflow, type) and issubclass(workflow, Workflow):
            wf_name = check_entity_name(name or entity_name(workflow))
            classes = [workflow]
        else:
            raise ConfigurationError(
                f"add_workflow expects a Workflow subclass (or a workflow's name, to run its "
                f"engines only), got {workflow!r}"
            )
        runs_executor = executor_role(executor, bool(classes), "workflow", wf_name)
        check_some_role(
            "workflow",
            wf_name,
            executor=runs_executor,
            state_engine=state_engine,
            tag_engine=tag_engine,
        )
        if check_mode is not None or cache_size is not None:  # else the worker's defaults
            mode = CheckMode(check_mode) if check_mode is not None else None
            self._workflow_options[wf_name] = (mode, cache_size)
        if task_timeout is not None or task_retry is not None:
            check_seconds(task_timeout=task_timeout)
            if task_retry is not None and not isinstance(task_retry, RetryPolicy):
                raise ConfigurationError(f"task_retry must be a RetryPolicy, got {task_retry!r}")
            self._task_options[wf_name] = (task_timeout, task_retry)
        roles = WorkflowRoles(
            wf_name,
            list(classes),
            concurrency,
            state_engine_concurrency or concurrency,
            tag_engine_concurrency or concurrency,
            executor=runs_executor,
            state_engine=bool(state_engine),
            tag_engine=bool(tag_engine),
            state_engine_storage=state_engine_storage,
            tag_engine_storage=tag_engine_storage,
        )
        existing = self._workflows.get(wf_name)
        if existing is not None and existing.classes and classes and not self._started:
            versions = {workflow_version(c) for c in existing.classes}
            if workflow_version(classes[0]) in versions:
                raise ConfigurationError(
                    f"workflow {wf_name} version {workflow_version(classes[0])} is already "
                    "registered on this worker"
                )
            existing.merge(roles)
            return self
        self._check_new(wf_name)
        if not runs_executor:
            roles.classes = []  # the engines only
        self._workflows[wf_name] = roles
        return self

    def _check_new(self, name: str) -> None:
        if self._started:
            raise ConfigurationError("register services and workflows before starting the worker")
        if name in self._services or name in self._workflows:
            raise ConfigurationError(f"{name!r} is already registered on this worker")

    def add_event_listener(
        self, listener: object, config: EventListenerConfig | None = None, **options: Any
    ) -> Self:
        """Call ``listener`` with batches of CloudEvents of this worker's services and
        workflows (and of those its allow lists name), read from the events topics with its
        own subscription: at least once, in order per topic, never slowing the engines.

        Args:
            listener: a callable receiving a ``list`` of ``cloudevents`` CloudEvents (a
                coroutine function is awaited, a sync one runs in a thread), or a class built
                with no argument whose instances are such callables. When it raises, the
                batch's messages are delivered again, then dead-lettered.
            config: its settings, or the same as keyword ``options`` (``concurrency=2``,
                ``subscription_name="audit"``, ``batch={"max_messages": 100}``,
                ``workflows={"deny": ["W"]}``...; see :class:`EventListenerConfig`).

        Raises:
            ConfigurationError: the worker is started, the listener is not callable or an
                option is invalid.
        """
        if self._started:
            raise ConfigurationError("register event listeners before starting the worker")
        self.events.add_listener(listener, config, options)
        return self

    def add_companion(self, companion: Companion) -> Self:
        """Run ``companion`` as long as the worker: started once the worker is (its consumers
        are on), closed first when the worker closes (e.g. the dashboard of a ``dashboard:``
        section, package infinitic-dashboard).

        Raises:
            ConfigurationError: the worker is started.
        """
        if self._started:
            raise ConfigurationError("add companions before starting the worker")
        self._companions.append(companion)
        return self

    # -- lifecycle ------------------------------------------------------------------------------

    def workflow_executor(self, workflow_name: str) -> WorkflowExecutor:
        """The executor running the code of a workflow (its counters: ``cpu_seconds``,
        ``executed_tasks``, ``replayed_steps``, ``cached_count()``); available once started."""
        try:
            return self._workflow_executors[workflow_name]
        except KeyError:
            raise ConfigurationError(
                f"no started workflow executor for {workflow_name!r} on worker {self.name}"
            ) from None

    @property
    def client(self) -> InfiniticClient:
        """A client sharing this worker's transport."""
        if self._client is None:
            self._client = InfiniticClient(transport=self.transport, name=None)
        return self._client

    def in_flight(self) -> dict[str, int]:
        """Messages being handled now, by component (topic), those with none left out."""
        return {k: v for k, v in sorted(self._in_flight.items()) if v}

    async def start(self) -> None:
        """Start consuming every topic of the registered entities; idempotent.

        Before anything starts, the storage must answer a read and the broker (when built from
        a configuration) accept a connection.

        Raises:
            ConfigurationError: nothing is registered, or the worker is closed.
            UnreachableError: the storage or the broker does not answer (named by its address,
                password hidden); nothing was started.
        """
        async with self._lock:
            if self._started:
                return
            if self._closed:
                raise ConfigurationError(f"worker {self.name} is closed")
            if (
                not self._services
                and not self._workflows
                and not self.events.listened(list(self._services), list(self._workflows))
            ):
                raise ConfigurationError(
                    f"worker {self.name} has nothing to run: register at least one service or "
                    "workflow first (services: or workflows: in a configuration), or an event "
                    "listener whose allow lists name some"
                )
            await storage_check(self.storage, self._storage_description)()
            for storage, description in self._engine_storages():
                await storage_check(storage, description)()
            for check in self._checks:
                await check()
            if self.metrics is not None:
                await self.metrics.start()
            await self.transport.start()
            try:
                for s in self._services.values():
                    await self._start_service(s)
                for w in self._workflows.values():
                    await self._start_workflow(w)
                self._consumers += await self.events.start_listeners(
                    list(self._services),
                    list(self._workflows),
                    max_redeliveries=self._max_redeliveries,
                    redelivery_delay=self._redelivery_delay,
                )
            except BaseException:
                await self._close_consumers()
                raise
            self._started = True
            for companion in self._companions:
                await companion.start()
            logger.info(
                "worker %s started: services %s, workflows %s",
                self.name,
                [s.describe() for _, s in sorted(self._services.items())],
                [w.describe() for _, w in sorted(self._workflows.items())],
            )

    def _engine_storages(self) -> list[tuple[Storage, str]]:
        """The storages given to engines apart from the worker's, with their descriptions."""
        found: dict[int, tuple[Storage, str]] = {}
        for s in self._services.values():
            if s.tag_engine and s.tag_engine_storage is not None:
                where = f"the storage of service {s.name}'s tag engine"
                found.setdefault(id(s.tag_engine_storage), (s.tag_engine_storage, where))
        for w in self._workflows.values():
            for on, storage, engine in (
                (w.state_engine, w.state_engine_storage, "state engine"),
                (w.tag_engine, w.tag_engine_storage, "tag engine"),
            ):
                if on and storage is not None:
                    where = f"the storage of workflow {w.name}'s {engine}"
                    found.setdefault(id(storage), (storage, where))
        return [
            (storage, self._storage_names.get(id(storage), where))
            for storage, where in found.values()
            if storage is not self.storage
        ]

    def _name_storage(self, storage: Storage, description: str) -> None:
        """How errors name an engine's own storage (a configuration key and an address)."""
        self._storage_names[id(storage)] = description

    async def _close_consumers(self) -> None:
        consumers, self._consumers = self._consumers, []
        await asyncio.gather(*(c.close() for c in consumers), return_exceptions=True)

    async def close(self) -> None:
        """Stop receiving, let in-flight messages finish for up to
        :attr:`shutdown_grace_period` seconds (logging what runs), abandon what still runs
        (it is delivered again), then close the worker's client and what the worker owns;
        idempotent.

        The injected transport and storage are not closed: they belong to the caller.
        """
        if self._closed:
            return
        self._closed = True
        for companion in reversed(self._companions):
            try:
                await companion.close()
            except Exception as e:  # closing must go on
                logger.warning("worker %s: error while closing %s: %s", self.name, companion, e)
        if self._client is not None:
            await self._client.close()
        if self._local_results is not None:  # what finishes now goes through the broker
            self._local_results.stop()
        drained = await self._drain(self.shutdown_grace_period)
        if self.metrics is not None:
            await self.metrics.close()
        if drained:
            for executor in self._executors:
                await executor.close()
        for close in self._owned:  # what from_config built: transport, then storage
            try:
                await close()
            except Exception as e:
                logger.warning("worker %s: error while closing: %s", self.name, e)
        logger.info("worker %s closed", self.name)

    def abandon(self) -> None:
        """Make a running :meth:`close` stop waiting for in-flight messages now (a second
        SIGINT or SIGTERM calls this); they are delivered again."""
        self._abandon.set()

    async def _drain(self, grace_period: float) -> bool:
        """Close the consumers, waiting for their handlers up to ``grace_period`` seconds;
        True when every handler finished."""
        consumers, self._consumers = self._consumers, []
        return await drain(
            self.name, consumers, self._handler_tasks, self.in_flight, self._abandon, grace_period
        )

    shutdown = close

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def serve(self) -> None:
        """Start, then run until SIGINT or SIGTERM (or cancellation), then close (see
        :meth:`close`); a second signal abandons in-flight messages at once."""
        await serve_until_signal(
            self.name, self.shutdown_grace_period, self.start, self.close, self.abandon
        )

    def run(self) -> None:
        """Block running the worker until SIGINT or SIGTERM (for scripts and the CLI)."""
        asyncio.run(self.serve())
