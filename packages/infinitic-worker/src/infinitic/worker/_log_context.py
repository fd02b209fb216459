"""Logs of a worker: the ids of the message being handled on every record, and JSON output.

Loggers (one per component, all under ``infinitic``): ``infinitic.worker`` (start, stop, dead
letter notices), ``infinitic.workflow_engine`` (state engines and workflow executors),
``infinitic.workflows.<Workflow>`` (``self.logger`` in workflow code), ``infinitic.task_executor``,
``infinitic.task_tag``, ``infinitic.workflow_tag``, ``infinitic.transport`` and
``infinitic.transport_pulsar`` (failures, retries, dead letters: one line each, no stack trace),
``infinitic.transport_pulsar.client`` (the Pulsar C++ client, WARNING unless set),
``infinitic.storage``, ``infinitic.client``.

While a worker handles a message, the message is the *log context* of the handling task:
:class:`LogContextFilter` adds its ids to every record emitted meanwhile (by the engines, the
user's code, the transport's line about that message's retry or dead letter). The context stays
set on the consumer's task until its next message, so the transport's lines written after the
handler returned (a retry, a dead letter) carry the ids too.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import IO, Any

from infinitic.common.messages import Message

#: The attributes :class:`LogContextFilter` sets on every record (None outside a handling).
CONTEXT_FIELDS = (
    "topic",
    "message_type",
    "message_id",
    "workflow_name",
    "workflow_id",
    "service_name",
    "method_name",
    "task_id",
)


class HandlingContext:
    """The message a task handles now: its topic, then the decoded message once decoded."""

    __slots__ = ("message", "topic")

    def __init__(self, topic: str) -> None:
        self.topic = topic
        self.message: Message | None = None

    def fields(self) -> dict[str, str | None]:
        """The context fields (see :data:`CONTEXT_FIELDS`), read from the message lazily: the
        hot path only stores the message, a record reads its ids."""
        m = self.message
        found: dict[str, str | None] = dict.fromkeys(CONTEXT_FIELDS)
        found["topic"] = self.topic
        if m is None:
            return found
        found["message_type"] = type(m).__name__
        found["message_id"] = getattr(m, "message_id", None)
        requester = getattr(m, "requester", None)
        found["workflow_name"] = getattr(m, "workflow_name", None) or getattr(
            requester, "workflow_name", None
        )
        found["workflow_id"] = getattr(m, "workflow_id", None) or getattr(
            requester, "workflow_id", None
        )
        found["service_name"] = getattr(m, "service_name", None)
        found["method_name"] = getattr(m, "method_name", None)
        found["task_id"] = getattr(m, "task_id", None) or getattr(m, "workflow_task_id", None)
        return found


_current: ContextVar[HandlingContext | None] = ContextVar("infinitic_handling", default=None)


def enter_handling(topic: str) -> HandlingContext:
    """Make a new context the current task's (kept until the task's next message)."""
    context = HandlingContext(topic)
    _current.set(context)
    return context


@contextmanager
def nested_handling() -> Iterator[None]:
    """Handle a message inside the handling of another (a worker's service executor handing a
    result to its own state engine): the outer message's context is the current one again
    after."""
    token = _current.set(_current.get())
    try:
        yield
    finally:
        _current.reset(token)


def current_log_context() -> dict[str, str | None]:
    """The ids of the message the current task handles (all None outside a handling)."""
    context = _current.get()
    if context is None:
        return dict.fromkeys(CONTEXT_FIELDS)
    return context.fields()


class LogContextFilter(logging.Filter):
    """Adds the ids of the message being handled to each record: the attributes of
    :data:`CONTEXT_FIELDS` (None when absent) and ``infinitic_ids``, a short text for
    formats (`` [workflow BankWorkflow 0193..., task 0193...]``, or empty).

    Attach it to a *handler* (a logger's filters do not see records of its children)::

        handler.addFilter(LogContextFilter())
        handler.setFormatter(logging.Formatter("%(name)s: %(message)s%(infinitic_ids)s"))
    """

    def filter(self, record: logging.LogRecord) -> bool:
        fields = current_log_context()
        for name, value in fields.items():
            if not hasattr(record, name):
                setattr(record, name, value)
        record.infinitic_ids = _short(fields)
        return True


def _short(fields: dict[str, str | None]) -> str:
    parts = []
    if fields["workflow_id"]:
        parts.append(f"workflow {fields['workflow_name'] or '?'} {fields['workflow_id']}")
    if fields["task_id"]:
        parts.append(f"task {fields['task_id']}")
    return f" [{', '.join(parts)}]" if parts else ""


class JsonLogFormatter(logging.Formatter):
    """One JSON object per record: ``time`` (ISO 8601, UTC), ``level``, ``logger``,
    ``message``, the context ids that are set (with :class:`LogContextFilter`), and
    ``exception`` (the formatted stack trace) when the record has one."""

    def format(self, record: logging.LogRecord) -> str:
        seconds = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        out: dict[str, Any] = {
            "time": f"{seconds}.{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in CONTEXT_FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                out[name] = value
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            out["exception"] = record.exc_text
        return json.dumps(out, default=str)


TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s%(infinitic_ids)s"


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stderr`` is when a record comes (it may be replaced)."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self) -> IO[str]:
        return sys.stderr

    @stream.setter
    def stream(self, value: IO[str]) -> None:
        pass


_installed: logging.Handler | None = None


def configure_logging(
    level: int | str = "INFO", *, json_output: bool = False, stream: IO[str] | None = None
) -> logging.Handler:
    """Send every log record to ``stream`` (default: stderr) with the message ids of
    :class:`LogContextFilter`, as text or as JSON lines (:class:`JsonLogFormatter`).

    Sets the root logger's level and adds one handler to it (returned), replacing the one an
    earlier call added. The Pulsar C++ client's logger (``infinitic.transport_pulsar.client``)
    stays at WARNING unless its level is set.

    Raises:
        ValueError: ``level`` is not a level name or number.
    """
    global _installed
    if isinstance(level, str):
        named = logging.getLevelName(level.upper())
        if not isinstance(named, int):
            raise ValueError(f"unknown log level {level!r} (DEBUG, INFO, WARNING, ERROR)")
        level = named
    handler: logging.Handler = (
        logging.StreamHandler(stream) if stream is not None else _StderrHandler()
    )
    handler.addFilter(LogContextFilter())
    handler.setFormatter(JsonLogFormatter() if json_output else logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    if _installed is not None:
        root.removeHandler(_installed)
    root.addHandler(handler)
    root.setLevel(level)
    _installed = handler
    return handler
