"""InfiniticClient: start workflows, wait for their results, from application code."""

from __future__ import annotations

import base64
import logging
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from types import TracebackType
from typing import Any, ParamSpec, Self, TypeVar, cast

from infinitic.client._config import DEFAULT_REQUEST_TIMEOUT, client_settings, load_yaml
from infinitic.client._core import ClientCore
from infinitic.client._deferred import ByTagDeferred, WorkflowDeferred
from infinitic.client._existing import ExistingWorkflowStub
from infinitic.client._tags import TagOperations, WorkflowByTagStub
from infinitic.client._watch import DEFAULT_UNREGISTERED_WARNING
from infinitic.common import (
    MethodSignature,
    entity_name,
    method_timeout,
    new_id,
    read_workflow_state,
)
from infinitic.common import Stub as _Stub
from infinitic.common import StubMethod as _StubMethod
from infinitic.common.messages import (
    CancelWorkflow,
    CompleteTimers,
    DispatchWorkflow,
    RetryTasks,
    RetryWorkflowTask,
    WorkflowMessage,
)
from infinitic.exceptions import ConfigurationError, InfiniticError
from infinitic.transport import Transport
from infinitic.workflows import Workflow

logger = logging.getLogger("infinitic.client")

P = ParamSpec("P")
R = TypeVar("R")
T = TypeVar("T")


class _NewWorkflowStub(_Stub):
    _kind = "workflow"

    def __init__(
        self,
        client: InfiniticClient,
        workflow: type,
        tags: Iterable[str] | None,
        meta: Mapping[str, bytes] | None,
    ) -> None:
        super().__init__(workflow, tags, meta)
        self._client = client

    def _call(
        self, sig: MethodSignature, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Awaitable[Any]:
        dumped = sig.dump_args(args, kwargs)  # refuses bad payloads before anything is sent
        timeout = method_timeout(self.interface, sig.method_name)

        async def run() -> Any:
            deferred: WorkflowDeferred[Any] = await self._client._start(self, sig, dumped)
            return await deferred.result_within(timeout)

        return run()


def _json_compatible(value: Any) -> Any:
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    if isinstance(value, dict):
        return {str(k): _json_compatible(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_compatible(v) for v in value]
    return value


def _stub_of(stub: object) -> ExistingWorkflowStub | WorkflowByTagStub:
    if isinstance(stub, ExistingWorkflowStub | WorkflowByTagStub):
        return stub
    raise TypeError(
        f"expected a stub from client.get_workflow_by_id or get_workflow_by_tag, got {stub!r}"
    )


def _workflow_class(workflow: object, call: str) -> type:
    """``workflow`` if it is a Workflow subclass; a TypeError saying what it is otherwise."""
    if isinstance(workflow, type) and issubclass(workflow, Workflow):
        return workflow
    what = f"the class {workflow.__name__}" if isinstance(workflow, type) else repr(workflow)
    raise TypeError(
        f"client.{call} expects a Workflow subclass (a class deriving from "
        f"infinitic.workflows.Workflow), got {what}; services are called from workflows"
    )


class InfiniticClient:
    """Starts workflows and waits for their results.

    A long-lived object: use ``async with InfiniticClient(transport=...) as client`` or call
    :meth:`start` and :meth:`close`. Each client has a private response topic.

    Args:
        transport: the transport shared with the workers.
        name: a unique client name (default: generated).
        storage: the workers' storage, for :meth:`get_workflow_state` (optional).
        request_timeout: seconds to wait for a tag engine's answer (ids by tag, starts with
            a custom id) before raising TimeoutError; None waits forever.
        unregistered_warning_seconds: after a command to a workflow, seconds without any
            answer from its state engine before the client asks it (one message) and, without
            an answer within 5 s more, logs a warning naming the workflow and the topic (is a
            worker running it?); None: never. Nothing fails: the messages wait for a worker.
    """

    def __init__(
        self,
        *,
        transport: Transport,
        name: str | None = None,
        storage: Any = None,
        request_timeout: float | None = DEFAULT_REQUEST_TIMEOUT,
        unregistered_warning_seconds: float | None = DEFAULT_UNREGISTERED_WARNING,
    ) -> None:
        if unregistered_warning_seconds is not None and (
            isinstance(unregistered_warning_seconds, bool)
            or not isinstance(unregistered_warning_seconds, int | float)
            or unregistered_warning_seconds <= 0
        ):
            raise ConfigurationError(
                "unregistered_warning_seconds must be a positive number of seconds or None, "
                f"got {unregistered_warning_seconds!r}"
            )
        self._core = ClientCore(
            transport,
            name or f"client-{new_id()}",
            request_timeout,
            unregistered_warning=unregistered_warning_seconds,
        )
        self._core.starter = self.start  # a subclass's start runs before the first send
        self._tags = TagOperations(self._core)
        self._storage = storage

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> InfiniticClient:
        """A client built from a configuration mapping (the shape of the YAML file).

        Only ``transport`` (and ``client.name``, ``client.requestTimeoutSeconds``,
        ``client.unregisteredWarningSeconds``) are read.
        The client owns the transport it built and closes it in :meth:`close`.
        ``INFINITIC__...`` environment variables override keys.

        Raises:
            ConfigurationError: the transport section is missing or invalid (naming the key).
        """
        settings = client_settings(config)
        transport = settings.transport
        client = cls(
            transport=transport,
            name=settings.name,
            request_timeout=settings.request_timeout,
            unregistered_warning_seconds=settings.unregistered_warning,
        )
        client._core.owned_transport = transport
        return client

    @classmethod
    def from_yaml(cls, path: str | os.PathLike[str]) -> InfiniticClient:
        """A client built from a YAML file (the workers' file works); see :meth:`from_config`."""
        return cls.from_config(load_yaml(path))

    @property
    def name(self) -> str:
        """The client's unique name (its response topic is named after it)."""
        return self._core.name

    @property
    def transport(self) -> Transport:
        """The transport this client sends on (shared with the workers)."""
        return self._core.transport

    async def start(self) -> None:
        """Subscribe to the response topic; idempotent."""
        await self._core.start()

    async def close(self) -> None:
        """Stop listening; pending waits fail with InfiniticError; idempotent."""
        await self._core.close()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    # -- stubs ----------------------------------------------------------------------------------

    def new_workflow(
        self,
        workflow: type[T],
        *,
        tags: Iterable[str] | None = None,
        meta: Mapping[str, bytes] | None = None,
    ) -> T:
        """Return a stub whose method calls each start a new instance of ``workflow``.

        ``await stub.method(...)`` starts it and waits for the result; use :meth:`dispatch` to
        start it without waiting. Arguments are checked against the method's type hints first.

        Raises:
            TypeError: ``workflow`` is not a Workflow subclass.
        """
        cls = _workflow_class(workflow, "new_workflow")
        return cast(T, _NewWorkflowStub(self, cls, tags, meta))

    async def dispatch(
        self, method: Callable[P, Awaitable[R]], *args: P.args, **kwargs: P.kwargs
    ) -> WorkflowDeferred[R]:
        """Start a workflow method and return at once (once the broker has the command).

        The method comes from a stub of ``client.new_workflow`` (a new instance),
        ``client.get_workflow_by_id`` (a new method run on that instance) or
        ``client.get_workflow_by_tag`` (a new method run on every instance with the tag when
        the tag engine handles it; none: nothing happens).

        Returns:
            A WorkflowDeferred: ``.id`` is the workflow id; await it for the result. For a
            by-tag stub, a ByTagDeferred (typed as the former): ``.tag`` and
            ``.method_run_id``; it has no single id or result (both raise InfiniticError).
        """
        if not isinstance(method, _StubMethod) or not isinstance(
            method.stub, _NewWorkflowStub | ExistingWorkflowStub | WorkflowByTagStub
        ):
            raise TypeError(
                "dispatch() expects a method of a stub from client.new_workflow, "
                f"client.get_workflow_by_id or client.get_workflow_by_tag, got {method!r}"
            )
        sig = method.signature
        dumped = sig.dump_args(args, kwargs)
        if isinstance(method.stub, WorkflowByTagStub):
            run_id = await method.stub.dispatch_method(sig, dumped)
            by_tag: Any = ByTagDeferred(method.stub.workflow_name, method.stub.tag, run_id, sig)
            return cast(WorkflowDeferred[R], by_tag)
        if isinstance(method.stub, ExistingWorkflowStub):
            return await method.stub.dispatch_method(sig, dumped)
        return await self._start(method.stub, sig, dumped)

    def get_workflow_by_id(self, workflow: Callable[..., T], workflow_id: str) -> T:
        """Return a stub of an existing instance: call its methods (each call is a new method
        run on the instance), send to its channels, or pass it to cancel/retry operations.

        Nothing is checked until used: an unknown id makes awaited calls raise
        WorkflowUnknownError, and signals to it are dropped.
        """
        if not isinstance(workflow_id, str) or not workflow_id:
            raise TypeError(f"workflow_id must be a non-empty string, got {workflow_id!r}")
        cls = _workflow_class(workflow, "get_workflow_by_id")
        return cast(T, ExistingWorkflowStub(self._core, cls, workflow_id))

    def get_workflow_by_tag(self, workflow: Callable[..., T], tag: str) -> T:
        """Return a stub of the instances of ``workflow`` that hold ``tag`` (for
        :meth:`get_ids`, and for commands sent to them all). Nothing is checked until used."""
        return self._tags.get_workflow_by_tag(workflow, tag)

    # -- commands -------------------------------------------------------------------------------

    async def cancel(self, stub: object) -> None:
        """Cancel an instance (by id, or every instance of a by-tag stub): its method runs end
        canceled (waiters get WorkflowCanceledError) and its ongoing child workflows are
        canceled too. Returns once the command is sent; idempotent."""
        await self._command(stub, CancelWorkflow)

    async def retry_workflow_task(self, stub: object) -> None:
        """Run again the workflow task that failed (e.g. after deploying fixed workflow code)."""
        await self._command(stub, RetryWorkflowTask)

    async def retry_tasks(
        self,
        stub: object,
        *,
        task_ids: list[str] | None = None,
        status: str | None = None,
        service: str | None = None,
    ) -> None:
        """Dispatch again tasks of an instance: by id, by status (default: the failed ones)
        and/or by service name. A failed task whose failure made the workflow task fail is
        retried and, once it completes, the workflow resumes."""
        await self._command(
            stub, RetryTasks, task_ids=task_ids, status=status, service_name=service
        )

    async def complete_timers(self, stub: object, *, method_run_id: str | None = None) -> None:
        """Complete now the ongoing timers of an instance (of one method run, if given)."""
        await self._command(stub, CompleteTimers, method_run_id=method_run_id)

    async def complete_delegated_task(self, service: str | type, task_id: str, value: Any) -> None:
        """Give the result of a delegated task; its requester (a workflow, usually) resumes.

        Args:
            service: the service's name, or its interface.
            task_id: the task's id (``task_context().task_id`` in the delegated method).
            value: the result, checked by the service's tag engine against the method's return
                type (a value that does not fit is refused and logged; the task keeps waiting).

        Returns once the broker has the completion. Idempotent: completing a task again, or an
        unknown task id, does nothing (the tag engine logs it).
        """
        await self._tags.complete_delegated_task(service, task_id, value)

    # -- reading --------------------------------------------------------------------------------

    async def get_ids(self, stub: object, *, page_size: int = 1000) -> list[str]:
        """Return the ids of the instances holding the tag of a by-tag stub (in id order).

        The ids are read page by page from the workflow tag engine (a worker of the workflow must
        be running); an instance is listed from just before it starts until just after it ends.

        Raises:
            TimeoutError: a page did not come within the client's ``request_timeout``.
        """
        return [workflow_id async for workflow_id in self.iter_ids(stub, page_size=page_size)]

    async def iter_ids(self, stub: object, *, page_size: int = 1000) -> AsyncIterator[str]:
        """Like :meth:`get_ids`, one page in memory at a time."""
        async for workflow_id in self._tags.iter_ids(stub, page_size=page_size):
            yield workflow_id

    async def get_workflow_state(self, stub: object) -> dict[str, Any] | None:
        """Read the stored state of an instance, as JSON-compatible data (bytes as base64), for
        inspection: its method runs, steps, commands and their outcomes. None when the instance
        does not exist (never started, or completed and removed).

        Needs the client to be built with ``storage=`` (the workers' storage).
        """
        if not isinstance(stub, ExistingWorkflowStub):
            raise TypeError(f"expected a stub from client.get_workflow_by_id, got {stub!r}")
        if self._storage is None:
            raise InfiniticError(
                "reading workflow states needs InfiniticClient(..., storage=<the workers' storage>)"
            )
        state = await read_workflow_state(
            self._storage.key_value, stub.entity_name, stub.workflow_id
        )
        if state is None:
            return None
        return _json_compatible(state)  # type: ignore[no-any-return]

    # -- internals ------------------------------------------------------------------------------

    async def _command(self, stub: object, build: type[WorkflowMessage], **fields: Any) -> None:
        s = _stub_of(stub)
        await self._core.command(s.command(build, **fields), tag=s.tag)

    async def _send_by_tag(self, workflow_name: str, tag: str, command: WorkflowMessage) -> None:
        """Send a copy of any workflow command to every instance of ``workflow_name`` holding
        ``tag`` (for tests and tools that send commands the public API does not build)."""
        if command.workflow_name != workflow_name:
            raise ValueError(
                f"a command for workflow {command.workflow_name!r} cannot be sent to instances "
                f"of {workflow_name!r}"
            )
        await self._core.command(command, tag=tag)

    async def _start(
        self, stub: _Stub, sig: MethodSignature, args: list[Any]
    ) -> WorkflowDeferred[Any]:
        name = entity_name(stub.interface)
        workflow_id = new_id()
        deferred: WorkflowDeferred[Any] = WorkflowDeferred(
            self._core, name, workflow_id, workflow_id, sig
        )
        dispatch = DispatchWorkflow(
            workflow_name=name,
            workflow_id=workflow_id,
            method_name=sig.method_name,
            method_args=args,
            tags=sorted(stub._tags),
            meta=stub._meta,
            requester=self._core.requester,
        )
        try:  # tags: through the tag engine
            return await self._tags.start_dispatch(deferred, dispatch)
        except BaseException:
            self._core.forget(workflow_id, workflow_id)
            raise
