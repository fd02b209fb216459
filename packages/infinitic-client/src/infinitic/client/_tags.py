"""Client operations on tags and delegated tasks: by-tag stubs, workflow ids by tag, starts
with tags and custom ids, completion of delegated tasks.

:class:`TagOperations` works on the client's :class:`ClientCore`; ``InfiniticClient`` holds
one and exposes its public methods.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any, TypeVar, cast

from pydantic import TypeAdapter

from infinitic.client._core import ClientCore
from infinitic.client._deferred import WorkflowDeferred
from infinitic.client._existing import ChannelSender
from infinitic.common import Stub as _Stub
from infinitic.common import TopicKind, check_entity_name, entity_name, new_id, topic
from infinitic.common.messages import DispatchMethod, DispatchWorkflow, WorkflowMessage
from infinitic.common.tag_messages import (
    CompleteDelegatedTask,
    GetWorkflowIdsByTag,
    WorkflowDispatchResolved,
    WorkflowIdsPage,
    dispatch_route,
    is_custom_id,
)
from infinitic.exceptions import InfiniticError

T = TypeVar("T")

_ANY: TypeAdapter[Any] = TypeAdapter(Any)


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

    def __init__(self, core: ClientCore, workflow: type, tag: str) -> None:
        super().__init__(workflow, None, None)
        self._core = core
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
        command = self.command(
            DispatchMethod, method_run_id=run_id, method_name=sig.method_name, method_args=args
        )
        await self._core.command(command, tag=self.tag)
        return run_id

    def _channel(self, channel: Any) -> ChannelSender:
        return ChannelSender(self._core, self, channel)

    def __repr__(self) -> str:
        return f"<WorkflowByTagStub {self.workflow_name} tag={self.tag!r}>"


class TagOperations:
    """The tag and delegated-task operations of a client."""

    def __init__(self, core: ClientCore) -> None:
        self._core = core

    def get_workflow_by_tag(self, workflow: Callable[..., T], tag: str) -> T:
        """See :meth:`InfiniticClient.get_workflow_by_tag`."""
        if not isinstance(tag, str) or not tag:
            raise TypeError(f"tag must be a non-empty string, got {tag!r}")
        return cast(T, WorkflowByTagStub(self._core, cast(type, workflow), tag))

    async def iter_ids(self, stub: object, *, page_size: int = 1000) -> AsyncIterator[str]:
        """See :meth:`InfiniticClient.iter_ids`."""
        s = by_tag(stub)
        after: str | None = None
        while True:
            request_id = new_id()
            request = GetWorkflowIdsByTag(
                workflow_name=s.workflow_name,
                tag=s.tag,
                client_name=self._core.name,
                request_id=request_id,
                after=after,
                limit=page_size,
            )
            to = topic(TopicKind.WORKFLOW_TAG, s.workflow_name)
            reply, _ = await self._core.request(request_id, to, request, s.tag)
            assert isinstance(reply, WorkflowIdsPage)
            for workflow_id in reply.workflow_ids:
                yield workflow_id
            if reply.next_cursor is None:
                return
            after = reply.next_cursor

    async def complete_delegated_task(self, service: str | type, task_id: str, value: Any) -> None:
        """See :meth:`InfiniticClient.complete_delegated_task`."""
        name = check_entity_name(service if isinstance(service, str) else entity_name(service))
        if not isinstance(task_id, str) or not task_id:
            raise TypeError(f"task_id must be a non-empty string, got {task_id!r}")
        completion = CompleteDelegatedTask(
            service_name=name,
            task_id=task_id,
            status="completed",
            value=_ANY.dump_python(value, mode="json"),
        )
        await self._core.send(topic(TopicKind.TASK_TAG, name), completion, task_id)

    async def start_dispatch(
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
            await self._core.send(to, message, key)
            return deferred
        request_id = new_id()
        to, message, key = dispatch_route(dispatch, reply_to=self._core.name, request_id=request_id)
        reply, outcome = await self._core.request(request_id, to, message, key)
        assert isinstance(reply, WorkflowDispatchResolved)
        if reply.created or outcome is None:
            return deferred
        self._core.forget(deferred.id, deferred.method_run_id)
        return WorkflowDeferred(
            self._core,
            deferred.workflow_name,
            reply.workflow_id,
            reply.workflow_id,
            deferred._signature,
            outcome,  # the one registered when the reply was handled
        )


def by_tag(stub: object) -> WorkflowByTagStub:
    """``stub`` if it is a by-tag stub, else TypeError."""
    if isinstance(stub, WorkflowByTagStub):
        return stub
    raise TypeError(f"expected a stub from client.get_workflow_by_tag, got {stub!r}")
