"""What an instance's page shows, shaped from its stored state (the plain data of
``client.get_workflow_state``): its method runs, its commands with their timings, its signals."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any


@dataclass(frozen=True, slots=True)
class MethodRow:
    """A method run of an instance and its status."""

    method_run_id: str
    method_name: str
    args: str
    status: str  # running, failed
    failure: str


@dataclass(frozen=True, slots=True)
class CommandRow:
    """A command of an instance (a task, a child workflow, a timer, a receive...)."""

    command_id: str
    kind: str
    what: str
    status: str
    step: int | None
    dispatched_at: str
    ended_at: str
    duration: str
    failure: str


@dataclass(frozen=True, slots=True)
class InstanceView:
    """An instance's page, from its state."""

    status: str  # running, failed
    methods: list[MethodRow]
    commands: list[CommandRow]
    steps: list[dict[str, Any]]
    signals: list[dict[str, Any]]
    buffered_signals: list[dict[str, Any]]
    tags: list[str]
    meta: dict[str, str]
    failed_task: str
    raw: str


def to_json(value: Any) -> str:
    """Compact JSON text of plain data (anything else as text)."""
    return json.dumps(value, default=str, ensure_ascii=False)


SAID_ELSEWHERE = ("workflowName", "workflowVersion", "workerName", "infiniticVersion")


def event_data(data: dict[str, Any]) -> str:
    """An event's data as shown in a timeline: JSON, without what every event repeats."""
    return to_json({k: v for k, v in data.items() if k not in SAID_ELSEWHERE})


def failure_text(failure: Any) -> str:
    """One line telling a failure of the state or of an event (empty: none)."""
    if not isinstance(failure, dict):
        return "" if failure is None else str(failure)
    parts: list[str] = []
    node: Any = failure
    while isinstance(node, dict):
        label = node.get("class_name") or node.get("name") or node.get("kind") or ""
        where = ".".join(x for x in (node.get("service_name"), node.get("method_name")) if x)
        text = " ".join(x for x in (str(label), where, str(node.get("message") or "")) if x)
        if text:
            parts.append(text)
        node = node.get("cause")
    return " <- ".join(parts)


def _when(instant: float | None) -> str:
    if instant is None:
        return ""
    return datetime.fromtimestamp(instant, UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


def _what(command: dict[str, Any]) -> str:
    kind = command.get("kind")
    if kind == "task":
        return f"{command.get('service_name')}.{command.get('method_name')}"
    if kind in ("child", "workflow", "method"):
        name = command.get("workflow_name") or ""
        return f"{name}.{command.get('method_name') or ''}".strip(".")
    if kind == "receive":
        return f"channel {command.get('channel_name')}"
    if kind == "timer":
        return f"timer {command.get('duration') or command.get('until') or ''}".strip()
    return str(command.get("name") or command.get("method_name") or "")


def instance_view(state: dict[str, Any]) -> InstanceView:
    """The page of an instance whose stored state is ``state``."""
    steps: list[dict[str, Any]] = list(state.get("steps") or [])
    dispatched: dict[int, float] = {}
    delivered: dict[str, float] = {}
    for step in steps:
        instant = step.get("instant")
        if isinstance(instant, int | float):
            dispatched[int(step.get("index", 0))] = float(instant)
            for delivery in step.get("deliveries") or []:
                delivered.setdefault(str(delivery.get("id")), float(instant))
    failed_runs: dict[str, Any] = dict(state.get("failed_runs") or {})
    methods = [
        MethodRow(
            method_run_id=run_id,
            method_name=str(run.get("method_name", "")),
            args=to_json(run.get("args", [])),
            status="failed" if run_id in failed_runs else "running",
            failure=failure_text(failed_runs.get(run_id)),
        )
        for run_id, run in (state.get("method_runs") or {}).items()
    ]
    commands: list[CommandRow] = []
    for command_id, command in (state.get("commands") or {}).items():
        step = command.get("step")
        start = dispatched.get(step) if isinstance(step, int) else None
        end = delivered.get(command_id)
        status = str(command.get("status", ""))
        commands.append(
            CommandRow(
                command_id=command_id,
                kind=str(command.get("kind", "")),
                what=_what(command),
                status=status,
                step=step if isinstance(step, int) else None,
                dispatched_at=_when(start),
                ended_at=_when(end) if status != "ongoing" else "",
                duration=f"{end - start:.3f} s" if start is not None and end is not None else "",
                failure=failure_text(command.get("failure")),
            )
        )
    commands.sort(key=lambda c: (c.step if c.step is not None else -1, c.command_id))
    meta = {k: _meta_text(v) for k, v in (state.get("meta") or {}).items()}
    failed_task = failure_text(state.get("failed_task"))
    return InstanceView(
        status="failed" if failed_runs or failed_task else "running",
        methods=methods,
        commands=commands,
        steps=[{**s, "at": _when(s.get("instant"))} for s in steps],
        signals=list((state.get("signals") or {}).values()),
        buffered_signals=list(state.get("buffered_signals") or []),
        tags=list(state.get("tags") or []),
        meta=meta,
        failed_task=failed_task,
        raw=json.dumps(state, default=str, indent=1, ensure_ascii=False),
    )


def _meta_text(value: Any) -> str:
    """A meta value (bytes, base64 in the plain state) as text when it decodes, else base64."""
    if isinstance(value, bytes):
        raw = value
    else:
        try:
            raw = base64.b64decode(str(value), validate=True)
        except ValueError:
            return str(value)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return base64.b64encode(raw).decode("ascii")
