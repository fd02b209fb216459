"""The workflow tag engine on a recording transport: paging, idempotence, custom ids."""

from __future__ import annotations

from collections.abc import Mapping

import pytest

import infinitic.workflow_tag
from infinitic.common import decode_message
from infinitic.common.messages import (
    CancelWorkflow,
    DispatchWorkflow,
    Message,
    Requester,
    WaitMethod,
)
from infinitic.common.tag_messages import (
    DispatchWorkflowByTags,
    GetWorkflowIdsByTag,
    SendToWorkflowsByTag,
    WorkflowDispatchResolved,
    WorkflowIdsPage,
    dispatch_route,
)
from infinitic.storage import InMemoryStorage
from infinitic.transport import Consumer, Transport
from infinitic.workflow_tag import WorkflowTagEngine


class Recording(Transport):
    def __init__(self) -> None:
        self.sent: list[tuple[str, Message, str | None]] = []

    async def publish(
        self,
        topic: str,
        data: bytes,
        *,
        key: str | None = None,
        deliver_at: float | None = None,
        properties: Mapping[str, str] | None = None,
    ) -> None:
        self.sent.append((topic, decode_message(data), key))

    async def subscribe(self, *args: object, **kwargs: object) -> Consumer:
        raise NotImplementedError

    async def close(self) -> None:
        pass

    def take(self) -> list[tuple[str, Message, str | None]]:
        sent, self.sent = self.sent, []
        return sent


def test_public_api() -> None:
    assert sorted(infinitic.workflow_tag.__all__) == [
        "FAN_OUT_PAGE_SIZE",
        "MAX_IDS_PAGE_SIZE",
        "WorkflowTagEngine",
    ]


@pytest.fixture
def storage() -> InMemoryStorage:
    return InMemoryStorage()


async def tag(storage: InMemoryStorage, n: int) -> list[str]:
    ids = [f"id-{i:03d}" for i in range(n)]
    for i in ids:
        await storage.key_set.add("workflow-tag:W:t", i)
    return ids


async def test_fan_out_page_by_page(storage: InMemoryStorage) -> None:
    ids = await tag(storage, 10)
    transport = Recording()
    engine = WorkflowTagEngine("W", transport, storage.key_set, page_size=3)
    message: Message | None = SendToWorkflowsByTag.of(
        "t", CancelWorkflow(workflow_name="W", workflow_id="", reason="r")
    )
    reached: list[str] = []
    handled = 0
    while message is not None:
        await engine.handle(message)
        handled += 1
        message = None
        sent = transport.take()
        commands = [(t, m, k) for t, m, k in sent if t == "workflow-cmd:W"]
        assert len(commands) <= 3  # one page at a time
        for _, m, k in commands:
            assert isinstance(m, CancelWorkflow)
            assert m.reason == "r"
            assert k == m.workflow_id
            reached.append(m.workflow_id)
        for t, m, k in sent:
            if t == "workflow-tag:W":
                assert k == "t"
                message = m
    assert reached == ids
    assert handled == 4


async def test_fan_out_redelivered_sends_the_same_messages(storage: InMemoryStorage) -> None:
    await tag(storage, 5)
    transport = Recording()
    engine = WorkflowTagEngine("W", transport, storage.key_set, page_size=2)
    message = SendToWorkflowsByTag.of("t", CancelWorkflow(workflow_name="W", workflow_id=""))
    await engine.handle(message)
    first = [m.message_id for _, m, _ in transport.take()]
    await engine.handle(message)
    assert [m.message_id for _, m, _ in transport.take()] == first


async def test_fan_out_without_instances_sends_nothing(storage: InMemoryStorage) -> None:
    transport = Recording()
    engine = WorkflowTagEngine("W", transport, storage.key_set)
    await engine.handle(
        SendToWorkflowsByTag.of("none", CancelWorkflow(workflow_name="W", workflow_id=""))
    )
    assert transport.sent == []


async def test_ids_pages(storage: InMemoryStorage) -> None:
    ids = await tag(storage, 5)
    transport = Recording()
    engine = WorkflowTagEngine("W", transport, storage.key_set)
    await engine.handle(
        GetWorkflowIdsByTag(workflow_name="W", tag="t", client_name="c", request_id="r", limit=3)
    )
    ((to, page, _),) = transport.take()
    assert to == "response:c"
    assert isinstance(page, WorkflowIdsPage)
    assert (page.workflow_ids, page.next_cursor) == (ids[:3], ids[2])


async def test_custom_id_then_other_tags_then_dispatch(storage: InMemoryStorage) -> None:
    transport = Recording()
    engine = WorkflowTagEngine("W", transport, storage.key_set)
    requester = Requester.client("c")
    d = DispatchWorkflow(
        workflow_name="W",
        workflow_id="w1",
        method_name="run",
        method_args=[],
        tags=["z", "customId:x", "a"],
        requester=requester,
    )
    _, first, key = dispatch_route(d, reply_to="c", request_id="r1")
    assert isinstance(first, DispatchWorkflowByTags)
    assert key == "customId:x"
    message: Message = first
    hops = []
    while True:
        await engine.handle(message)
        sent = transport.take()
        hops.append([(t, type(m).__name__, k) for t, m, k in sent])
        forward = [m for t, m, _ in sent if t == "workflow-tag:W"]
        if not forward:
            break
        message = forward[0]
    assert hops == [
        [
            ("response:c", "WorkflowDispatchResolved", None),
            ("workflow-tag:W", "DispatchWorkflowByTags", "a"),
        ],
        [("workflow-tag:W", "DispatchWorkflowByTags", "z")],
        [("workflow-cmd:W", "DispatchWorkflow", "w1")],
    ]
    for t in ("customId:x", "a", "z"):
        assert (await storage.key_set.page(f"workflow-tag:W:{t}")).members == ["w1"]

    # the same custom id again: the requester waits for w1; no tag added
    d2 = d.model_copy(update={"workflow_id": "w2", "tags": ["customId:x", "b"]})
    _, again, _ = dispatch_route(d2, reply_to="c", request_id="r2")
    await engine.handle(again)
    sent = transport.take()
    assert [(t, type(m).__name__, k) for t, m, k in sent] == [
        ("response:c", "WorkflowDispatchResolved", None),
        ("workflow-cmd:W", "WaitMethod", "w1"),
    ]
    resolved, wait = sent[0][1], sent[1][1]
    assert isinstance(resolved, WorkflowDispatchResolved)
    assert (resolved.workflow_id, resolved.created, resolved.request_id) == ("w1", False, "r2")
    assert isinstance(wait, WaitMethod)
    assert wait.requester == requester
    assert await storage.key_set.count("workflow-tag:W:b") == 0

    # a redelivered hop of the first start goes on (its own id is there)
    await engine.handle(first)
    assert [type(m).__name__ for _, m, _ in transport.take()] == [
        "WorkflowDispatchResolved",
        "DispatchWorkflowByTags",
    ]


async def test_messages_of_another_workflow_are_refused(storage: InMemoryStorage) -> None:
    engine = WorkflowTagEngine("W", Recording(), storage.key_set)
    with pytest.raises(ValueError, match="tag topic"):
        await engine.handle(
            SendToWorkflowsByTag.of("t", CancelWorkflow(workflow_name="V", workflow_id=""))
        )
