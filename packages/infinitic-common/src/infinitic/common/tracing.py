"""OpenTelemetry tracing of Infinitic's message path (the optional ``tracing`` extra).

With ``opentelemetry-api`` installed (``pip install "infinitic-worker[tracing]"``, or
``infinitic-client[tracing]``) every hop of a workflow is a span of one trace: the client's call
(a producer span), each message a worker handles (a consumer span: the state engine's, the
service executor's task, a tag engine's...), each workflow task the state engine runs, and the
outcome the client receives. The trace context crosses the broker in the W3C ``traceparent``
and ``tracestate`` message properties: every message sent while a span is current carries it,
and the handler of a message continues the trace it names. Spans go wherever the application's
OpenTelemetry SDK sends them.

Tracing is on when the package is installed and a tracer provider is set (the application's
global one, or one given to :func:`configure`). Otherwise, or after ``configure(enabled=False)``,
every function here is a no-op and costs a flag test: nothing is added to messages.

Span names say what runs: ``dispatch BankWorkflow.wire`` (a client's call), ``workflow
BankWorkflow.wire DispatchWorkflow`` (the state engine starting it), ``workflow BankWorkflow
CommandResult`` (the state engine applying a result), ``workflow task BankWorkflow`` (a
workflow task), ``task BankService.withdraw`` (a service executor running a task),
``outcome BankWorkflow.wire`` (the client receiving the method's outcome). Attributes name the
ids: ``infinitic.workflow.name``, ``infinitic.workflow.id``, ``infinitic.method.name``,
``infinitic.service.name``, ``infinitic.task.id``, ``messaging.destination.name`` (the topic),
``messaging.message.id``.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

try:
    from opentelemetry import context as _otel_context
    from opentelemetry import propagate as _propagate
    from opentelemetry import trace as _trace
except ImportError:  # the tracing extra is not installed
    _trace = None  # type: ignore[assignment]

__all__ = [
    "available",
    "configure",
    "enabled",
    "handling",
    "headers",
    "internal",
    "message_attributes",
    "message_span_name",
    "producing",
    "record_error",
    "recording",
]

_INSTRUMENTATION = "infinitic"
_switch = True  # configure(enabled=...)
_provider: Any = None  # configure(tracer_provider=...)
_tracer: Any = None
_active = False  # on, with a tracer (cached once true)
_looked_at = -1e9  # when the global tracer provider was last looked at


def available() -> bool:
    """Whether OpenTelemetry's API is installed."""
    return _trace is not None


def enabled() -> bool:
    """Whether Infinitic creates spans and carries trace context in messages: OpenTelemetry's
    API is installed, tracing is not switched off, and a tracer provider is set (given to
    :func:`configure`, or the application's global one: one set later is noticed within a
    second)."""
    if _active:
        return True
    if not _switch or _trace is None:
        return False
    if _provider is None and time.monotonic() - _looked_at < 1.0:
        return False  # the application's provider is looked for at most once a second
    return _activate()


def _activate() -> bool:
    global _active, _tracer, _looked_at
    _looked_at = time.monotonic()
    if _provider is not None:
        _tracer = _provider.get_tracer(_INSTRUMENTATION)
    elif not isinstance(_trace.get_tracer_provider(), _trace.ProxyTracerProvider):
        _tracer = _trace.get_tracer(_INSTRUMENTATION)
    else:  # no SDK configured yet: nothing would be recorded
        return False
    _active = True
    return True


def configure(*, enabled: bool = True, tracer_provider: Any = None) -> None:
    """Switch tracing on or off for this process, and choose the tracer provider (None: the
    application's global one, ``opentelemetry.trace.set_tracer_provider``).

    Raises:
        RuntimeError: ``enabled=True`` without the ``opentelemetry-api`` package.
    """
    global _switch, _provider, _tracer, _active, _looked_at
    if enabled and _trace is None:
        raise RuntimeError(
            "tracing needs the opentelemetry-api package: "
            'pip install "infinitic-worker[tracing]" (or "infinitic-client[tracing]")'
        )
    _switch, _provider, _tracer, _active = enabled, tracer_provider, None, False
    _looked_at = -1e9


def _get_tracer() -> Any:
    return _tracer


def recording() -> bool:
    """Whether a span made now could be recorded: tracing is on and the current trace, if
    any, is sampled (a span of an unsampled trace is not worth its cost)."""
    if not enabled():
        return False
    current = _trace.get_current_span().get_span_context()
    return not current.is_valid or bool(current.trace_flags.sampled)


def headers() -> dict[str, str] | None:
    """The current trace context as message properties, or None (tracing off, no span)."""
    if not enabled():
        return None
    carrier: dict[str, str] = {}
    _propagate.inject(carrier)
    return carrier or None


@contextmanager
def handling(
    properties: Mapping[str, str],
    message: Any,
    topic: str,
    component: str | None = None,
    benign: tuple[type[BaseException], ...] = (),
) -> Iterator[Any]:
    """A consumer span for a message of ``topic`` handled by ``component``, child of the
    context carried in ``properties`` and current while the block runs, named and described by
    :func:`message_span_name` and :func:`message_attributes`; an exception of the block is
    recorded on it (a ``benign`` one only as the ``infinitic.postponed`` attribute). A message of a
    trace its sender did not sample gets no span of its own: its context is made current as it
    came, so that what is sent while handling it stays in that unsampled trace, for the cost of
    reading a property (a sampler that records a tenth of the traces then costs about a tenth
    of the spans)."""
    if not enabled():
        yield None
        return
    parent = _propagate.extract(properties)
    sender = _trace.get_current_span(parent).get_span_context()
    if sender.is_valid and not sender.trace_flags.sampled:
        token = _otel_context.attach(parent)
        try:
            yield None
        finally:
            _otel_context.detach(token)
        return
    name = message_span_name(message, component)
    attributes = message_attributes(message, topic)
    with _span(name, _trace.SpanKind.CONSUMER, parent, attributes, benign) as span:
        yield span


@contextmanager
def producing(name: str, attributes: Mapping[str, Any] | None = None) -> Iterator[Any]:
    """A producer span (a client's call), child of the current span if any."""
    if not enabled():
        yield None
        return
    with _span(name, _trace.SpanKind.PRODUCER, None, attributes, ()) as span:
        yield span


@contextmanager
def internal(name: str, attributes: Mapping[str, Any] | None = None) -> Iterator[Any]:
    """An internal span (a workflow task run by the state engine), child of the current one."""
    if not enabled():
        yield None
        return
    with _span(name, _trace.SpanKind.INTERNAL, None, attributes, ()) as span:
        yield span


def record_error(error: BaseException) -> None:
    """Record ``error`` on the current span: a failure handled without raising (a task
    attempt that failed, whose failure is sent on)."""
    if enabled():
        _failed(_trace.get_current_span(), error)


def _failed(span: Any, error: BaseException) -> None:
    span.record_exception(error)
    span.set_status(_trace.Status(_trace.StatusCode.ERROR, f"{type(error).__name__}: {error}"))


@contextmanager
def _span(
    name: str,
    kind: Any,
    parent: Any,
    attributes: Mapping[str, Any] | None,
    benign: tuple[type[BaseException], ...],
) -> Iterator[Any]:
    span = _get_tracer().start_span(name, context=parent, kind=kind, attributes=attributes)
    token = _otel_context.attach(_trace.set_span_in_context(span, parent))
    try:
        yield span
    except BaseException as e:
        if isinstance(e, benign):
            span.set_attribute("infinitic.postponed", str(e))
        else:
            _failed(span, e)
        raise
    finally:
        _otel_context.detach(token)
        span.end()


_VERBS = {
    "DispatchWorkflow": "dispatch",
    "DispatchMethod": "dispatch method",
    "SendSignal": "signal",
    "CancelWorkflow": "cancel",
    "RetryWorkflowTask": "retry workflow task",
    "RetryTasks": "retry tasks",
    "CompleteTimers": "complete timers",
    "WaitMethod": "wait",
    "MethodOutcome": "outcome",
    "TaskOutcome": "outcome",
}


def message_span_name(message: Any, component: str | None = None) -> str:
    """The span name of sending ``message`` (``dispatch BankWorkflow.wire``) or, with the
    ``component`` handling it, of handling it (``workflow BankWorkflow CommandResult``); a task
    is ``task BankService.withdraw`` wherever it is handled."""
    kind = getattr(message, "TYPE", "") or type(message).__name__
    fields = _fields(message)
    entity = fields.get("service_name") or fields.get("workflow_name")
    member = fields.get("method_name") or fields.get("channel_name")
    target = f"{entity}.{member}" if entity and member else str(entity or "?")
    if kind == "ExecuteTask":
        return f"task {target}"
    if component is not None:
        return f"{component} {target} {kind}"
    return f"{_VERBS.get(kind, kind)} {target}"


def message_attributes(message: Any, topic: str | None = None) -> dict[str, Any]:
    """The span attributes of a message: the ids and names it carries."""
    attributes: dict[str, Any] = {}
    fields = _fields(message)
    for field, key in _ATTRIBUTE_FIELDS:
        value = fields.get(field)
        if isinstance(value, str) and value:
            attributes[key] = value
    if topic is not None:
        attributes["messaging.destination.name"] = topic
    return attributes


def _fields(message: Any) -> Mapping[str, Any]:
    """The fields of a message (a pydantic model keeps them in its ``__dict__``; asking a model
    for a field it does not have costs an exception)."""
    fields = getattr(message, "__dict__", None)
    return fields if isinstance(fields, dict) else {}


_ATTRIBUTE_FIELDS = (
    ("workflow_name", "infinitic.workflow.name"),
    ("workflow_id", "infinitic.workflow.id"),
    ("service_name", "infinitic.service.name"),
    ("method_name", "infinitic.method.name"),
    ("channel_name", "infinitic.channel.name"),
    ("task_id", "infinitic.task.id"),
    ("workflow_task_id", "infinitic.workflow_task.id"),
    ("message_id", "messaging.message.id"),
)
