"""The workflow tag engine: tag -> workflow ids, custom ids, by-tag fan-out.

It consumes ``workflow-tag:<Workflow>``, keyed by tag, so the messages of one tag are handled one
at a time; each handler is idempotent and sends what follows before returning (the message is
acknowledged after), so a crash at any point loses nothing: a redelivered message does the same
storage operations (add and remove are idempotent) and sends the same messages again, with the
same message ids.
"""

from __future__ import annotations

import logging

from infinitic.common import TopicKind, deterministic_id, response_topic, topic
from infinitic.common.messages import Message, WaitMethod
from infinitic.common.tag_messages import (
    AddTagToWorkflow,
    DispatchWorkflowByTags,
    GetWorkflowIdsByTag,
    RemoveTagFromWorkflow,
    SendToWorkflowsByTag,
    WorkflowDispatchResolved,
    WorkflowIdsPage,
    WorkflowTagMessage,
    is_custom_id,
    tag_order,
    workflow_tag_key,
)
from infinitic.storage import KeySetStorage
from infinitic.transport import Outbox, Transport

logger = logging.getLogger("infinitic.workflow_tag")

#: Ids read (and commands sent) per fan-out message.
FAN_OUT_PAGE_SIZE = 1000
#: Largest page of ids a client may ask for.
MAX_IDS_PAGE_SIZE = 10_000


class WorkflowTagEngine:
    """Handles the ``workflow-tag`` topic of one workflow.

    Args:
        workflow_name: the workflow's wire name.
        transport: where commands and replies are sent.
        storage: the key-set storage holding ``workflow-tag:<Workflow>:<tag>`` -> workflow ids.
        page_size: ids handled per fan-out message (bounds the engine's memory).
    """

    def __init__(
        self,
        workflow_name: str,
        transport: Transport,
        storage: KeySetStorage,
        *,
        page_size: int = FAN_OUT_PAGE_SIZE,
    ) -> None:
        if page_size < 1:
            raise ValueError(f"page_size must be at least 1, got {page_size}")
        self.workflow_name = workflow_name
        self._transport = transport
        self._storage = storage
        self._page_size = page_size

    async def handle(self, message: Message) -> None:
        """Process one message; idempotent; returns once what follows is sent."""
        if not isinstance(message, WorkflowTagMessage):
            raise ValueError(f"unexpected {type(message).__name__} on workflow-tag")
        if message.workflow_name != self.workflow_name:
            raise ValueError(
                f"message for workflow {message.workflow_name!r} on the tag topic of "
                f"{self.workflow_name!r}"
            )
        key = workflow_tag_key(self.workflow_name, message.tag)
        if isinstance(message, AddTagToWorkflow):
            await self._storage.add(key, message.workflow_id)
        elif isinstance(message, RemoveTagFromWorkflow):
            await self._storage.remove(key, message.workflow_id)
        elif isinstance(message, DispatchWorkflowByTags):
            await self._dispatch(key, message)
        elif isinstance(message, SendToWorkflowsByTag):
            await self._fan_out(key, message)
        elif isinstance(message, GetWorkflowIdsByTag):
            await self._get_ids(key, message)
        else:
            raise ValueError(f"the workflow tag engine does not handle {message.TYPE}")

    async def _dispatch(self, key: str, m: DispatchWorkflowByTags) -> None:
        d = m.dispatch
        out = Outbox()
        if is_custom_id(m.tag):
            page = await self._storage.page(key, limit=2)
            others = [i for i in page.members if i != d.workflow_id]
            if others:
                await self._join_existing(others[0], m, out)
                return
        await self._storage.add(key, d.workflow_id)
        if is_custom_id(m.tag) and m.reply_to and m.request_id:
            out.add(
                response_topic(m.reply_to),
                WorkflowDispatchResolved(
                    request_id=m.request_id,
                    workflow_id=d.workflow_id,
                    created=True,
                    message_id=deterministic_id(m.message_id, "resolved"),
                ),
            )
        order = tag_order(d.tags)
        following = order[order.index(m.tag) + 1 :] if m.tag in order else []
        if following:
            out.add(
                topic(TopicKind.WORKFLOW_TAG, self.workflow_name),
                m.model_copy(
                    update={
                        "tag": following[0],
                        "message_id": deterministic_id(m.message_id, "next"),
                    }
                ),
                key=following[0],
            )
        else:
            out.add(
                topic(TopicKind.WORKFLOW_CMD, self.workflow_name),
                d.model_copy(update={"message_id": deterministic_id(m.message_id, "dispatch")}),
                key=d.workflow_id,
            )
        await out.send(self._transport)

    async def _join_existing(self, existing: str, m: DispatchWorkflowByTags, out: Outbox) -> None:
        """A running instance already holds the custom id: no new instance; the requester
        waits for the existing one's main method run (the client is told its id first)."""
        logger.info(
            "workflow %s with tag %r already exists (%s): not starting %s",
            self.workflow_name,
            m.tag,
            existing,
            m.dispatch.workflow_id,
        )
        if m.reply_to and m.request_id:
            out.add(
                response_topic(m.reply_to),
                WorkflowDispatchResolved(
                    request_id=m.request_id,
                    workflow_id=existing,
                    created=False,
                    message_id=deterministic_id(m.message_id, "resolved"),
                ),
            )
            await out.send(self._transport)  # the client knows the id before any outcome
        if m.dispatch.requester is not None:
            out.add(
                topic(TopicKind.WORKFLOW_CMD, self.workflow_name),
                WaitMethod(
                    workflow_name=self.workflow_name,
                    workflow_id=existing,
                    method_run_id=existing,
                    requester=m.dispatch.requester,
                    message_id=deterministic_id(m.message_id, "wait"),
                ),
                key=existing,
            )
        await out.send(self._transport)

    async def _fan_out(self, key: str, m: SendToWorkflowsByTag) -> None:
        page = await self._storage.page(key, after=m.after, limit=self._page_size)
        if not page.members:
            return
        command = m.decoded_command()
        if command.workflow_name != self.workflow_name:
            raise ValueError(
                f"a {command.TYPE} for workflow {command.workflow_name!r} cannot be sent to the "
                f"instances of {self.workflow_name!r}"
            )
        out = Outbox()
        cmd_topic = topic(TopicKind.WORKFLOW_CMD, self.workflow_name)
        for workflow_id in page.members:
            out.add(
                cmd_topic,
                command.model_copy(
                    update={
                        "workflow_id": workflow_id,
                        "message_id": deterministic_id(m.message_id, workflow_id),
                    }
                ),
                key=workflow_id,
            )
        await out.send(self._transport)
        if page.next_cursor is not None:
            out.add(
                topic(TopicKind.WORKFLOW_TAG, self.workflow_name),
                m.model_copy(
                    update={
                        "after": page.next_cursor,
                        "message_id": deterministic_id(m.message_id, "after", page.next_cursor),
                    }
                ),
                key=m.tag,
            )
            await out.send(self._transport)

    async def _get_ids(self, key: str, m: GetWorkflowIdsByTag) -> None:
        limit = max(1, min(m.limit, MAX_IDS_PAGE_SIZE))
        page = await self._storage.page(key, after=m.after, limit=limit)
        out = Outbox()
        out.add(
            response_topic(m.client_name),
            WorkflowIdsPage(
                request_id=m.request_id,
                workflow_ids=page.members,
                next_cursor=page.next_cursor,
                message_id=deterministic_id(m.message_id, "ids"),
            ),
        )
        await out.send(self._transport)
