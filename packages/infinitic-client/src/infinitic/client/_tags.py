"""Client operations on tags and delegated tasks: by-tag stubs, workflow ids by tag, by-tag
fan-out of commands, starts with tags and custom ids, completion of delegated tasks.

They are methods of :class:`InfiniticClient` through :class:`TagOperations`.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any, TypeVar, cast

from pydantic import TypeAdapter

from infinitic.common import Stub as _Stub
from infinitic.common import TopicKind, check_entity_name, entity_name, new_id, topic
from infinitic.common.messages import (
    DispatchMethod,
    DispatchWorkflow,
    MethodOutcome,
    WorkflowMessage,
)
from infinitic.common.tag_messages import (
    ClientReply,
    CompleteDelegatedTask,
    GetWorkflowIdsByTag,
    SendToWorkflowsByTag,
    WorkflowDispatchResolved,
    WorkflowIdsPage,
    dispatch_route,
    is_custom_id,
)
from infinitic.exceptions import InfiniticError
from infinitic.transport import Outbox, Transport

if TYPE_CHECKING:
    from infinitic.client._client import WorkflowDeferred

T = TypeVar("T")

_ANY: TypeAdapter[Any] = TypeAdapter(Any)
_REPLIES = "_infinitic_tag_replies"

# a reply, and the outcome future registered for the instance it names (if any)
_Reply = tuple[ClientReply, "asyncio.Future[MethodOutcome] | None"]


class WorkflowByTagStub(_Stub):
    """A client's stub of the instances of a workflow with a tag (from
    ``client.get_workflow_by_tag``): pass it to ``client.get_ids``; commands sent through it go
    to every instance with the tag at the time they are handled (none: nothing happens).
    ``client.dispatch(stub.method, ...)`` starts a method run on each of them (there is no
    single result to wait for, so awaiting ``stub.method(...)`` itself is refused).

    Attributes:
        workflow: the workflow class.
        workflow_name: its wire name.
        tag: the tag.
    """

    _kind = "workflow"

    def __init__(self, client: TagOperations, workflow: type, tag: str) -> None:
        super().__init__(workflow, None, None)
        self._client = client
        self.workflow = workflow
        self.workflow_name = self.entity_name
        self.tag = tag

    def command(self, build: type[WorkflowMessage], **fields: Any) -> WorkflowMessage:
        """A command of type ``build`` for the instances with the tag (its workflow id is set
        for each instance by the tag engine)."""
        return build(workflow_name=self.workflow_name, workflow_id="", **fields)

    def _call(self, sig: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        raise InfiniticError(
            f"cannot wait for {self.workflow_name}.{sig.method_name} on the instances with tag "
            f"{self.tag!r} (there is no single result): start it on each of them with "
            f"client.dispatch(stub.{sig.method_name}, ...), or wait for one instance through "
            "client.get_workflow_by_id"
        )

    async def dispatch_method(self, sig: Any, args: list[Any]) -> str:
        """Start a method run on every instance with the tag (one run id for all: each
        instance keeps its own runs); nobody waits for their results. Returns the run id."""
        run_id = new_id()
        await self._client._send_by_tag(
            self.workflow_name,
            self.tag,
            self.command(
                DispatchMethod,
                method_run_id=run_id,
                method_name=sig.method_name,
                method_args=args,
            ),
        )
        return run_id

    def _channel(self, channel: Any) -> Any:
        from infinitic.client._existing import ChannelSender

        return ChannelSender(self._client, self, channel)  # type: ignore[arg-type]  # a TagOperations is an InfiniticClient

    def __repr__(self) -> str:
        return f"<WorkflowByTagStub {self.workflow_name} tag={self.tag!r}>"


class TagOperations:
    """The tag and delegated-task operations of :class:`InfiniticClient`."""

    name: str
    _transport: Transport
    _request_timeout: float | None
    _futures: dict[tuple[str, str], asyncio.Future[MethodOutcome]]
    _future: Callable[[str, str], asyncio.Future[MethodOutcome]]

    async def start(self) -> None:  # implemented by InfiniticClient
        raise NotImplementedError

    # -- public ---------------------------------------------------------------------------------

    def get_workflow_by_tag(self, workflow: Callable[..., T], tag: str) -> T:
        """Return a stub of the instances of ``workflow`` that hold ``tag`` (for
        :meth:`get_ids`, and for commands sent to them all). Nothing is checked until used."""
        if not isinstance(tag, str) or not tag:
            raise TypeError(f"tag must be a non-empty string, got {tag!r}")
        return cast(T, WorkflowByTagStub(self, cast(type, workflow), tag))

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
        s = _by_tag(stub)
        await self.start()
        after: str | None = None
        while True:
            request_id = new_id()
            reply = await self._request(
                request_id,
                topic(TopicKind.WORKFLOW_TAG, s.workflow_name),
                GetWorkflowIdsByTag(
                    workflow_name=s.workflow_name,
                    tag=s.tag,
                    client_name=self.name,
                    request_id=request_id,
                    after=after,
                    limit=page_size,
                ),
                s.tag,
            )
            assert isinstance(reply[0], WorkflowIdsPage)
            page = reply[0]
            for workflow_id in page.workflow_ids:
                yield workflow_id
            if page.next_cursor is None:
                return
            after = page.next_cursor

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
        name = check_entity_name(service if isinstance(service, str) else entity_name(service))
        if not isinstance(task_id, str) or not task_id:
            raise TypeError(f"task_id must be a non-empty string, got {task_id!r}")
        await self.start()
        out = Outbox()
        out.add(
            topic(TopicKind.TASK_TAG, name),
            CompleteDelegatedTask(
                service_name=name,
                task_id=task_id,
                status="completed",
                value=_ANY.dump_python(value, mode="json"),
            ),
            key=task_id,
        )
        await out.send(self._transport)

    # -- for the other client operations ----------------------------------------------------------

    async def _send_by_tag(self, workflow_name: str, tag: str, command: WorkflowMessage) -> None:
        """Send a copy of ``command`` (any workflow command; its ``workflow_id`` is ignored) to
        every instance of ``workflow_name`` holding ``tag``; returns once the broker has the
        request. The tag engine reads the ids page by page; no instance: nothing happens."""
        if command.workflow_name != workflow_name:
            raise ValueError(
                f"a command for workflow {command.workflow_name!r} cannot be sent to instances "
                f"of {workflow_name!r}"
            )
        await self.start()
        out = Outbox()
        out.add(
            topic(TopicKind.WORKFLOW_TAG, workflow_name),
            SendToWorkflowsByTag.of(tag, command),
            key=tag,
        )
        await out.send(self._transport)

    async def _start_dispatch(
        self, deferred: WorkflowDeferred[Any], dispatch: DispatchWorkflow
    ) -> WorkflowDeferred[Any]:
        """Send the dispatch of a new instance (through the tag engine if it has tags). With a
        custom id, wait until the tag engine says which instance runs it: a new one, or the
        running instance with that custom id (the returned deferred then has its id)."""
        custom_ids = [t for t in dispatch.tags if is_custom_id(t)]
        if len(custom_ids) > 1:
            raise ValueError(f"an instance can have one customId tag, got {sorted(custom_ids)}")
        if not custom_ids:
            to, message, key = dispatch_route(dispatch)
            out = Outbox()
            out.add(to, message, key=key)
            await out.send(self._transport)
            return deferred
        request_id = new_id()
        to, message, key = dispatch_route(dispatch, reply_to=self.name, request_id=request_id)
        reply, outcome = await self._request(request_id, to, message, key)
        assert isinstance(reply, WorkflowDispatchResolved)
        if reply.created or outcome is None:
            return deferred
        from infinitic.client._client import WorkflowDeferred

        self._futures.pop((deferred.id, deferred.method_run_id), None)
        existing: WorkflowDeferred[Any] = WorkflowDeferred(
            self,  # type: ignore[arg-type]
            deferred.workflow_name,
            reply.workflow_id,
            reply.workflow_id,
            deferred._signature,
        )
        existing._future = outcome  # the one registered when the reply was handled
        return existing

    def _on_reply(self, reply: ClientReply) -> None:
        """Hand a reply to its request (called by the response handler, without awaiting)."""
        outcome = None
        if isinstance(reply, WorkflowDispatchResolved) and not reply.created:
            # registered now, before any outcome of that instance can be handled
            outcome = self._future(reply.workflow_id, reply.workflow_id)
        future = self._replies().pop(reply.request_id, None)
        if future is not None and not future.done():
            future.set_result((reply, outcome))

    def _fail_replies(self, error: BaseException) -> None:
        replies = self._replies()
        for future in replies.values():
            if not future.done():
                future.set_exception(error)
        replies.clear()

    def _replies(self) -> dict[str, asyncio.Future[_Reply]]:
        replies = self.__dict__.get(_REPLIES)
        if replies is None:
            replies = self.__dict__[_REPLIES] = {}
        return cast(dict[str, asyncio.Future[_Reply]], replies)

    async def _request(self, request_id: str, to: str, message: Any, key: str) -> _Reply:
        future: asyncio.Future[_Reply] = asyncio.get_running_loop().create_future()
        self._replies()[request_id] = future
        try:
            out = Outbox()
            out.add(to, message, key=key)
            await out.send(self._transport)
            try:
                async with asyncio.timeout(self._request_timeout):
                    return await future
            except TimeoutError:
                raise TimeoutError(
                    f"no reply to {type(message).__name__} from {to} within "
                    f"{self._request_timeout} s: is a worker of {message.workflow_name} running?"
                ) from None
        finally:
            self._replies().pop(request_id, None)


def _by_tag(stub: object) -> WorkflowByTagStub:
    if isinstance(stub, WorkflowByTagStub):
        return stub
    raise TypeError(f"expected a stub from client.get_workflow_by_tag, got {stub!r}")
