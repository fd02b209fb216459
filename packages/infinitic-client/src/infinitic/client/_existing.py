"""Client stubs of existing workflow instances, and the signals sent to instances."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any

from infinitic.client._core import ClientCore
from infinitic.client._deferred import WorkflowDeferred
from infinitic.common import (
    Channel,
    MethodSignature,
    TopicKind,
    method_timeout,
    new_id,
    topic,
    type_names,
)
from infinitic.common import Stub as _Stub
from infinitic.common.messages import DispatchMethod, SendSignal, WorkflowMessage

if TYPE_CHECKING:
    from infinitic.client._tags import WorkflowByTagStub


class ExistingWorkflowStub(_Stub):
    """A client's stub of an existing instance (from ``client.get_workflow_by_id``).

    ``await stub.method(...)`` runs a new method run on the instance and waits for its result
    (``client.dispatch(stub.method, ...)`` does not wait); ``await stub.channel.send(value)``
    sends a signal.

    Attributes:
        workflow_id: the instance's id.
        tag: None (a stub of one instance, not of the instances with a tag).
    """

    _kind = "workflow"
    tag: str | None = None

    def __init__(self, core: ClientCore, workflow: type, workflow_id: str) -> None:
        super().__init__(workflow, None, None)
        self._core = core
        self.workflow_id = workflow_id

    @property
    def workflow_name(self) -> str:
        return self.entity_name

    def _call(
        self, sig: MethodSignature, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Awaitable[Any]:
        dumped = sig.dump_args(args, kwargs)
        timeout = method_timeout(self.interface, sig.method_name)

        async def run() -> Any:
            return await (await self.dispatch_method(sig, dumped)).result_within(timeout)

        return run()

    async def dispatch_method(self, sig: MethodSignature, args: list[Any]) -> WorkflowDeferred[Any]:
        """Start a new method run on the instance; its outcome comes to the client."""
        run_id = new_id()
        deferred: WorkflowDeferred[Any] = WorkflowDeferred(
            self._core, self.entity_name, self.workflow_id, run_id, sig
        )
        message = DispatchMethod(
            workflow_name=self.entity_name,
            workflow_id=self.workflow_id,
            method_run_id=run_id,
            method_name=sig.method_name,
            method_args=args,
            requester=self._core.requester,
        )
        try:
            await self._core.send(
                topic(TopicKind.WORKFLOW_CMD, self.entity_name), message, self.workflow_id
            )
        except BaseException:
            self._core.forget(self.workflow_id, run_id)
            raise
        return deferred

    def _channel(self, channel: Channel[Any]) -> ChannelSender:
        return ChannelSender(self._core, self, channel)

    def command(self, build: type[WorkflowMessage], **fields: Any) -> WorkflowMessage:
        """A command of type ``build`` addressed to this instance."""
        return build(workflow_name=self.entity_name, workflow_id=self.workflow_id, **fields)

    def __repr__(self) -> str:
        return f"<ExistingWorkflowStub {self.entity_name} id={self.workflow_id}>"


class ChannelSender:
    """A channel of an instance (or of the instances with a tag), seen from a client."""

    def __init__(
        self,
        core: ClientCore,
        stub: ExistingWorkflowStub | WorkflowByTagStub,
        channel: Channel[Any],
    ) -> None:
        self._core = core
        self._stub = stub
        self._channel = channel

    async def send(self, value: Any) -> str:
        """Send ``value`` (checked against the channel's type); returns the signal id once the
        broker has it. A signal that nothing receives is discarded by the instance."""
        data = self._channel.dump(value, f"workflow {self._stub.entity_name}")
        signal_id = new_id()
        signal = self._stub.command(
            SendSignal,
            channel_name=self._channel.name,
            signal_id=signal_id,
            data=data,
            type_names=type_names(value),
        )
        await self._core.command(signal, tag=self._stub.tag)
        return signal_id
