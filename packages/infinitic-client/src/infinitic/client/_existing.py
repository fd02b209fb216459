"""Client stubs of existing workflow instances, and the commands sent to instances."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any

from infinitic.common import Channel, MethodSignature, TopicKind, new_id, topic, type_names
from infinitic.common import Stub as _Stub
from infinitic.common.messages import DispatchMethod, Requester, SendSignal, WorkflowMessage
from infinitic.transport import Outbox

if TYPE_CHECKING:
    from infinitic.client._client import InfiniticClient, WorkflowDeferred
    from infinitic.client._tags import WorkflowByTagStub


class ExistingWorkflowStub(_Stub):
    """A client's stub of an existing instance (from ``client.get_workflow_by_id``).

    ``await stub.method(...)`` runs a new method run on the instance and waits for its result
    (``client.dispatch(stub.method, ...)`` does not wait); ``await stub.channel.send(value)``
    sends a signal.
    """

    _kind = "workflow"

    def __init__(self, client: InfiniticClient, workflow: type, workflow_id: str) -> None:
        super().__init__(workflow, None, None)
        self._client = client
        self.workflow_id = workflow_id

    @property
    def workflow_name(self) -> str:
        return self.entity_name

    def _call(
        self, sig: MethodSignature, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Awaitable[Any]:
        dumped = sig.dump_args(args, kwargs)

        async def run() -> Any:
            return await (await self._client._dispatch_method(self, sig, dumped))

        return run()

    def _channel(self, channel: Channel[Any]) -> ChannelSender:
        return ChannelSender(self._client, self, channel)

    def command(self, build: type[WorkflowMessage], **fields: Any) -> WorkflowMessage:
        """A command of type ``build`` addressed to this instance."""
        return build(workflow_name=self.entity_name, workflow_id=self.workflow_id, **fields)

    def __repr__(self) -> str:
        return f"<ExistingWorkflowStub {self.entity_name} id={self.workflow_id}>"


class ChannelSender:
    """A channel of an instance, seen from a client."""

    def __init__(
        self,
        client: InfiniticClient,
        stub: ExistingWorkflowStub | WorkflowByTagStub,
        channel: Channel[Any],
    ) -> None:
        self._client = client
        self._stub = stub
        self._channel = channel

    async def send(self, value: Any) -> str:
        """Send ``value`` (checked against the channel's type); returns the signal id once the
        broker has it. A signal that nothing receives is discarded by the instance."""
        data = self._channel.dump(value, f"workflow {self._stub.entity_name}")
        signal_id = new_id()
        await self._client._send_command(
            self._stub,
            self._stub.command(
                SendSignal,
                channel_name=self._channel.name,
                signal_id=signal_id,
                data=data,
                type_names=type_names(value),
            ),
        )
        return signal_id


async def dispatch_method(
    client: InfiniticClient, stub: ExistingWorkflowStub, sig: MethodSignature, args: list[Any]
) -> WorkflowDeferred[Any]:
    """Start a new method run on an existing instance; its result comes to the client."""
    from infinitic.client._client import WorkflowDeferred

    await client.start()
    run_id = new_id()
    deferred: WorkflowDeferred[Any] = WorkflowDeferred(
        client, stub.entity_name, stub.workflow_id, run_id, sig
    )
    out = Outbox()
    out.add(
        topic(TopicKind.WORKFLOW_CMD, stub.entity_name),
        DispatchMethod(
            workflow_name=stub.entity_name,
            workflow_id=stub.workflow_id,
            method_run_id=run_id,
            method_name=sig.method_name,
            method_args=args,
            requester=Requester.client(client.name),
        ),
        key=stub.workflow_id,
    )
    await out.send(client._transport)
    return deferred
