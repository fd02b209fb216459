"""InfiniticClient: start workflows, wait for their results, from application code."""

from __future__ import annotations

import asyncio
import base64
import logging
import os
from collections.abc import Awaitable, Callable, Generator, Iterable, Mapping
from types import TracebackType
from typing import Any, Generic, ParamSpec, Self, TypeVar, cast

from infinitic.client._config import DEFAULT_REQUEST_TIMEOUT, client_settings, load_yaml
from infinitic.client._existing import ExistingWorkflowStub, dispatch_method
from infinitic.client._tags import TagOperations, WorkflowByTagStub
from infinitic.common import (
    MethodSignature,
    TopicKind,
    decode_message,
    entity_name,
    exception_from_failure,
    new_id,
    read_workflow_state,
    response_topic,
    topic,
)
from infinitic.common import Stub as _Stub
from infinitic.common import StubMethod as _StubMethod
from infinitic.common.messages import (
    CancelWorkflow,
    CompleteTimers,
    DispatchWorkflow,
    MethodOutcome,
    Requester,
    RetryTasks,
    RetryWorkflowTask,
    WorkflowMessage,
    method_outcome_failure,
)
from infinitic.common.tag_messages import ClientReply
from infinitic.exceptions import InfiniticError
from infinitic.transport import (
    Consumer,
    ConsumerSettings,
    Outbox,
    SubscriptionType,
    Transport,
    TransportMessage,
)

logger = logging.getLogger("infinitic.client")

P = ParamSpec("P")
R = TypeVar("R")
T = TypeVar("T")


class WorkflowDeferred(Generic[R]):
    """A workflow method started by a client: its ids now, its result when awaited.

    Awaiting it more than once gives the same result. Raises what the method's waiter sees:
    WorkflowFailedError (with the failure chain), WorkflowCanceledError, WorkflowUnknownError.
    """

    def __init__(
        self,
        client: InfiniticClient,
        workflow_name: str,
        workflow_id: str,
        method_run_id: str,
        signature: MethodSignature,
    ) -> None:
        self._client = client
        self.workflow_name = workflow_name
        self.id = workflow_id
        self.method_run_id = method_run_id
        self._signature = signature
        self._future = client._future(workflow_id, method_run_id)

    @property
    def method_name(self) -> str:
        return self._signature.method_name

    async def result(self) -> R:
        """Wait for the method's result."""
        outcome = await asyncio.shield(self._future)
        if outcome.status == "completed":
            return cast(R, self._signature.load_result(outcome.value))
        failure = method_outcome_failure(outcome)
        assert failure is not None
        raise exception_from_failure(failure)

    def __await__(self) -> Generator[Any, None, R]:
        return self.result().__await__()

    def __repr__(self) -> str:
        return f"<WorkflowDeferred {self.workflow_name}.{self.method_name} id={self.id}>"


class ByTagDeferred(WorkflowDeferred[R]):
    """A method started on every instance with a tag (``client.dispatch`` of a by-tag stub's
    method). There is no single result: awaiting it raises InfiniticError; reach an instance
    through ``client.get_ids`` and ``client.get_workflow_by_id`` to follow it."""

    def __init__(
        self, workflow_name: str, tag: str, method_run_id: str, signature: MethodSignature
    ) -> None:
        self.workflow_name = workflow_name
        self.tag = tag
        self.id = ""
        self.method_run_id = method_run_id
        self._signature = signature

    async def result(self) -> R:
        raise InfiniticError(
            f"{self.workflow_name}.{self.method_name} was started on every instance with tag "
            f"{self.tag!r}: there is no single result to wait for"
        )

    def __repr__(self) -> str:
        return f"<ByTagDeferred {self.workflow_name}.{self.method_name} tag={self.tag!r}>"


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

        async def run() -> Any:
            deferred: WorkflowDeferred[Any] = await self._client._start(self, sig, dumped)
            return await deferred

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


class InfiniticClient(TagOperations):
    """Starts workflows and waits for their results.

    A long-lived object: use ``async with InfiniticClient(transport=...) as client`` or call
    :meth:`start` and :meth:`close`. Each client has a private response topic.

    Args:
        transport: the transport shared with the workers.
        name: a unique client name (default: generated).
        storage: the workers' storage, for :meth:`get_workflow_state` (optional).
        request_timeout: seconds to wait for a tag engine's answer (ids by tag, starts with
            a custom id) before raising TimeoutError; None waits forever.
    """

    def __init__(
        self,
        *,
        transport: Transport,
        name: str | None = None,
        storage: Any = None,
        request_timeout: float | None = DEFAULT_REQUEST_TIMEOUT,
    ) -> None:
        self._transport = transport
        self._storage = storage
        self._request_timeout = request_timeout
        self.name = name or f"client-{new_id()}"
        self._futures: dict[tuple[str, str], asyncio.Future[MethodOutcome]] = {}
        self._consumer: Consumer | None = None
        self._started = False
        self._closed = False
        self._lock = asyncio.Lock()
        self._owned_transport: Transport | None = None

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> InfiniticClient:
        """A client built from a configuration mapping (the shape of the YAML file).

        Only ``transport`` (and ``client.name``, ``client.requestTimeoutSeconds``) are read.
        The client owns the transport it built and closes it in :meth:`close`.
        ``INFINITIC__...`` environment variables override keys.

        Raises:
            ConfigurationError: the transport section is missing or invalid (naming the key).
        """
        transport, name, request_timeout = client_settings(config)
        client = cls(transport=transport, name=name, request_timeout=request_timeout)
        client._owned_transport = transport
        return client

    @classmethod
    def from_yaml(cls, path: str | os.PathLike[str]) -> InfiniticClient:
        """A client built from a YAML file (the workers' file works); see :meth:`from_config`."""
        return cls.from_config(load_yaml(path))

    async def start(self) -> None:
        """Subscribe to the response topic; idempotent."""
        async with self._lock:
            if self._started:
                return
            if self._closed:
                raise InfiniticError(f"client {self.name} is closed")
            await self._transport.start()
            self._consumer = await self._transport.subscribe(
                response_topic(self.name),
                "client",
                self._on_response,
                ConsumerSettings(type=SubscriptionType.EXCLUSIVE, concurrency=4),
            )
            self._started = True

    async def close(self) -> None:
        """Stop listening; pending waits fail with InfiniticError; idempotent."""
        if self._closed:
            return
        self._closed = True
        if self._consumer is not None:
            await self._consumer.close()
        if self._owned_transport is not None:
            await self._owned_transport.close()
        for future in self._futures.values():
            if not future.done():
                future.set_exception(InfiniticError(f"client {self.name} was closed"))
                # Whoever awaits it gets the error; nobody awaiting it is no error to log.
                future.add_done_callback(_retrieve)
        self._futures.clear()
        self._fail_replies(InfiniticError(f"client {self.name} was closed"))

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
        """
        return cast(T, _NewWorkflowStub(self, cast(type, workflow), tags, meta))

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
            by-tag stub, a ByTagDeferred (``.tag``; there is no single result to await).
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
            return ByTagDeferred(method.stub.workflow_name, method.stub.tag, run_id, sig)
        if isinstance(method.stub, ExistingWorkflowStub):
            return await self._dispatch_method(method.stub, sig, dumped)
        return await self._start(method.stub, sig, dumped)

    def get_workflow_by_id(self, workflow: Callable[..., T], workflow_id: str) -> T:
        """Return a stub of an existing instance: call its methods (each call is a new method
        run on the instance), send to its channels, or pass it to cancel/retry operations.

        Nothing is checked until used: an unknown id makes awaited calls raise
        WorkflowUnknownError, and signals to it are dropped.
        """
        if not isinstance(workflow_id, str) or not workflow_id:
            raise TypeError(f"workflow_id must be a non-empty string, got {workflow_id!r}")
        return cast(T, ExistingWorkflowStub(self, cast(type, workflow), workflow_id))

    async def cancel(self, stub: object) -> None:
        """Cancel an instance (by id, or every instance of a by-tag stub): its method runs end
        canceled (waiters get WorkflowCanceledError) and its ongoing child workflows are
        canceled too. Returns once the command is sent; idempotent."""
        await self._send_command(stub, _stub_of(stub).command(CancelWorkflow))

    async def retry_workflow_task(self, stub: object) -> None:
        """Run again the workflow task that failed (e.g. after deploying fixed workflow code)."""
        await self._send_command(stub, _stub_of(stub).command(RetryWorkflowTask))

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
        await self._send_command(
            stub,
            _stub_of(stub).command(
                RetryTasks, task_ids=task_ids, status=status, service_name=service
            ),
        )

    async def complete_timers(self, stub: object, *, method_run_id: str | None = None) -> None:
        """Complete now the ongoing timers of an instance (of one method run, if given)."""
        await self._send_command(
            stub, _stub_of(stub).command(CompleteTimers, method_run_id=method_run_id)
        )

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

    async def _dispatch_method(
        self, stub: ExistingWorkflowStub, sig: MethodSignature, args: list[Any]
    ) -> WorkflowDeferred[Any]:
        return await dispatch_method(self, stub, sig, args)

    async def _send_command(self, stub: object, message: WorkflowMessage) -> None:
        if isinstance(stub, WorkflowByTagStub):
            await self._send_by_tag(stub.workflow_name, stub.tag, message)
            return
        await self.start()
        out = Outbox()
        out.add(
            topic(TopicKind.WORKFLOW_CMD, message.workflow_name), message, key=message.workflow_id
        )
        await out.send(self._transport)

    # -- internals ------------------------------------------------------------------------------

    def _future(self, workflow_id: str, method_run_id: str) -> asyncio.Future[MethodOutcome]:
        key = (workflow_id, method_run_id)
        future = self._futures.get(key)
        if future is None:
            future = self._futures[key] = asyncio.get_running_loop().create_future()
        return future

    async def _start(
        self, stub: _Stub, sig: MethodSignature, args: list[Any]
    ) -> WorkflowDeferred[Any]:
        await self.start()
        name = entity_name(stub.interface)
        workflow_id = new_id()
        deferred: WorkflowDeferred[Any] = WorkflowDeferred(
            self, name, workflow_id, workflow_id, sig
        )
        dispatch = DispatchWorkflow(
            workflow_name=name,
            workflow_id=workflow_id,
            method_name=sig.method_name,
            method_args=args,
            tags=sorted(stub._tags),
            meta=stub._meta,
            requester=Requester.client(self.name),
        )
        return await self._start_dispatch(deferred, dispatch)  # tags: through the tag engine

    async def _on_response(self, message: TransportMessage) -> None:
        decoded = decode_message(message.data)
        if isinstance(decoded, ClientReply):
            self._on_reply(decoded)
            return
        if not isinstance(decoded, MethodOutcome):
            logger.warning("client %s ignores a %s message", self.name, type(decoded).__name__)
            return
        future = self._futures.pop((decoded.workflow_id, decoded.method_run_id), None)
        if future is not None and not future.done():
            future.set_result(decoded)


def _retrieve(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()
