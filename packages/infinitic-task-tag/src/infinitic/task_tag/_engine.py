"""The service tag engine: tag -> ongoing task ids, and who waits for delegated tasks.

It consumes ``task-tag:<Service>``: tag messages are keyed by tag, delegated-task messages by
task id, so the messages of one key are handled one at a time. Every handler is idempotent and
sends what follows before it changes storage for the last time, so a crash at any point loses
nothing.

A delegated task: before its method runs, the executor sends :class:`SetDelegatedTaskData`
(requester, tags, meta), stored under ``task-delegated:<Service>:<task id>``; its tags are added
then. ``client.complete_delegated_task`` sends :class:`CompleteDelegatedTask`: the value is
checked against the method's return type, the outcome goes to ``task-events`` (then to the
requester), the tags are removed and the data deleted. Completing an unknown or already
completed task does nothing (logged), so completing twice is harmless.
"""

from __future__ import annotations

import logging
from typing import Any

from pydantic import BaseModel, ValidationError

from infinitic.common import (
    deterministic_id,
    method_signature,
    pack,
    task_outcome_route,
    unpack,
)
from infinitic.common.messages import Message, Requester, TaskOutcome
from infinitic.common.tag_messages import (
    AddTagToTask,
    CompleteDelegatedTask,
    RemoveTagFromTask,
    SetDelegatedTaskData,
    TaskTagMessage,
    task_tag_key,
)
from infinitic.exceptions import CorruptedValueError, InfiniticError, MessageDecodeError
from infinitic.storage import KeySetStorage, KeyValueStorage
from infinitic.transport import Outbox, Transport

logger = logging.getLogger("infinitic.task_tag")

DELEGATED_FORMAT_VERSION = 1


def delegated_key(service_name: str, task_id: str) -> str:
    """The key-value storage key of the data of an ongoing delegated task."""
    return f"task-delegated:{service_name}:{task_id}"


class DelegatedTask(BaseModel):
    """What the engine keeps about an ongoing delegated task."""

    task_id: str
    method_name: str
    requester: Requester
    tags: list[str] = []
    meta: dict[str, bytes] = {}


def _decode(key: str, data: bytes) -> DelegatedTask:
    try:
        raw = unpack(data)
    except MessageDecodeError as e:
        raise CorruptedValueError(key, str(e)) from e
    if not isinstance(raw, dict) or raw.get("format") != DELEGATED_FORMAT_VERSION:
        raise CorruptedValueError(key, "not delegated task data of a known format")
    try:
        return DelegatedTask.model_validate(raw.get("task"))
    except ValidationError as e:
        raise CorruptedValueError(key, f"invalid delegated task data: {e}") from e


class TaskTagEngine:
    """Handles the ``task-tag`` topic of one service.

    Args:
        service_name: the service's wire name.
        transport: where outcomes are sent.
        key_set: holds ``task-tag:<Service>:<tag>`` -> ids of the ongoing tasks with the tag.
        key_value: holds the data of ongoing delegated tasks.
        interface: the service's contract, to check the values of delegated tasks against their
            method's return type (unchecked when None).
    """

    def __init__(
        self,
        service_name: str,
        transport: Transport,
        key_set: KeySetStorage,
        key_value: KeyValueStorage,
        *,
        interface: type | None = None,
    ) -> None:
        self.service_name = service_name
        self._transport = transport
        self._key_set = key_set
        self._key_value = key_value
        self._interface = interface

    async def handle(self, message: Message) -> None:
        """Process one message; idempotent; returns once what follows is sent and stored."""
        if not isinstance(message, TaskTagMessage):
            raise ValueError(f"unexpected {type(message).__name__} on task-tag")
        if message.service_name != self.service_name:
            raise ValueError(
                f"message for service {message.service_name!r} on the tag topic of "
                f"{self.service_name!r}"
            )
        if isinstance(message, AddTagToTask):
            await self._key_set.add(task_tag_key(self.service_name, message.tag), message.task_id)
        elif isinstance(message, RemoveTagFromTask):
            await self._key_set.remove(
                task_tag_key(self.service_name, message.tag), message.task_id
            )
        elif isinstance(message, SetDelegatedTaskData):
            await self._set_delegated(message)
        elif isinstance(message, CompleteDelegatedTask):
            await self._complete_delegated(message)
        else:
            raise ValueError(f"the service tag engine does not handle {message.TYPE}")

    async def _set_delegated(self, m: SetDelegatedTaskData) -> None:
        for tag in m.tags:
            await self._key_set.add(task_tag_key(self.service_name, tag), m.task_id)
        data = DelegatedTask(
            task_id=m.task_id,
            method_name=m.method_name,
            requester=m.requester,
            tags=m.tags,
            meta=m.meta,
        )
        await self._key_value.put(
            delegated_key(self.service_name, m.task_id),
            pack({"format": DELEGATED_FORMAT_VERSION, "task": data.model_dump()}),
        )

    async def _complete_delegated(self, m: CompleteDelegatedTask) -> None:
        key = delegated_key(self.service_name, m.task_id)
        stored = await self._key_value.get(key)
        if stored is None:
            logger.warning(
                "completion of delegated task %s of service %s ignored: no such ongoing task "
                "(unknown id, or already completed)",
                m.task_id,
                self.service_name,
            )
            return
        data = _decode(key, stored.value)
        status, value, failure = m.status, m.value, m.failure
        if status == "completed":
            try:
                value = self._checked(data.method_name, value)
            except InfiniticError as e:
                logger.error(
                    "completion of delegated task %s (%s.%s) refused, the task keeps waiting: %s",
                    m.task_id,
                    self.service_name,
                    data.method_name,
                    e,
                )
                return
        out = Outbox()
        outcome = TaskOutcome(
            task_id=m.task_id,
            service_name=self.service_name,
            method_name=data.method_name,
            status=status,
            value=value,
            failure=failure if status != "completed" else None,
            requester=data.requester,
            tags=data.tags,
            meta=data.meta,
            message_id=deterministic_id(m.message_id, "delegated-outcome"),
        )
        route = task_outcome_route(outcome)  # straight to the requester
        if route is not None:
            out.add(route[0], route[1], key=route[2])
        await out.send(self._transport)
        for tag in data.tags:
            await self._key_set.remove(task_tag_key(self.service_name, tag), m.task_id)
        await self._key_value.delete(key)

    def _checked(self, method_name: str, value: Any) -> Any:
        if self._interface is None:
            return value
        sig = method_signature(self._interface, method_name, "service", self.service_name)
        return sig.dump_result(sig.load_result(value))
