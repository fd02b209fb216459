"""Topic names: ``<prefix>:<EntityName>``, each with a ``-dlq`` dead-letter twin."""

from __future__ import annotations

import enum
import re

_NAME = re.compile(r"^[A-Za-z0-9_.\-]+$")


class TopicKind(enum.Enum):
    """The topics of an entity, their prefix and whether their messages are keyed."""

    TASK_TAG = ("task-tag", True)
    TASK_EXECUTOR = ("task-executor", False)
    TASK_RETRY = ("task-retry", False)
    TASK_EVENTS = ("task-events", False)
    WORKFLOW_TAG = ("workflow-tag", True)
    WORKFLOW_CMD = ("workflow-cmd", True)
    WORKFLOW_ENGINE = ("workflow-engine", True)
    WORKFLOW_DELAY = ("workflow-delay", False)
    WORKFLOW_EVENTS = ("workflow-events", False)
    WORKFLOW_TASK_EXECUTOR = ("workflow-task-executor", True)
    WORKFLOW_TASK_EVENTS = ("workflow-task-events", False)

    def __init__(self, prefix: str, keyed: bool) -> None:
        # Plain attributes: read for every message sent (an enum property is two Python calls).
        self.prefix = prefix
        self.keyed = keyed  # True when the topic is consumed key-shared (per-key order)

    @property
    def delayed(self) -> bool:
        """True when messages on the topic carry a due time."""
        return self in (
            TopicKind.TASK_RETRY,
            TopicKind.WORKFLOW_DELAY,
        )


#: The subscription of every engine and executor on its topics (workers share it; event
#: listeners and clients have their own).
ENGINE_SUBSCRIPTION = "infinitic"

SERVICE_TOPICS = (
    TopicKind.TASK_TAG,
    TopicKind.TASK_EXECUTOR,
    TopicKind.TASK_RETRY,
    TopicKind.TASK_EVENTS,
)
WORKFLOW_TOPICS = tuple(k for k in TopicKind if k not in SERVICE_TOPICS)


def check_entity_name(name: str) -> str:
    """Return ``name`` if it can be part of a topic name, else raise ValueError naming it."""
    if not _NAME.match(name):
        raise ValueError(
            f"invalid service or workflow name {name!r}: use letters, digits, '_', '.' or '-'"
        )
    return name


def topic(kind: TopicKind, entity: str) -> str:
    """Return the topic of ``kind`` for the service or workflow named ``entity``."""
    return f"{kind.prefix}:{entity}"


def response_topic(client_name: str) -> str:
    """Return the private response topic of a client."""
    return f"response:{client_name}"


def workflow_state_key(workflow_name: str, workflow_id: str) -> str:
    """The storage key of a workflow instance's state."""
    return f"workflow-state:{workflow_name}:{workflow_id}"
