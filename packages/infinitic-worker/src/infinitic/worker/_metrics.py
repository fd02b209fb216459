"""Prometheus metrics of a worker, in a registry of its own (several workers may share a
process), served over HTTP by :mod:`infinitic.worker._metrics_server`.

Every metric is measured from outside the engines: around the handler of each subscription
(messages, time, in flight, failures, retries, task durations), in the dead-letter hook, and
around the storage the engines are given (operation latency, workflow starts and completions).
On the hot path a measure is a plain attribute update on the event loop's thread (a histogram
is a bisect into bucket counts): the Prometheus families are built from them only when scraped
(``prometheus_client``'s own metric objects take a lock at each update, several times the cost).
"""

from __future__ import annotations

import ipaddress
from bisect import bisect_left
from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from infinitic.common import TopicKind
from infinitic.exceptions import ConfigurationError

#: Seconds: from a cached storage read (well under a millisecond) to a slow task.
BUCKETS = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
)
_LE = [*(repr(b) for b in BUCKETS), "+Inf"]

DEFAULT_METRICS_PORT = 9464
#: Methods timed apart per service; beyond (names come from messages), ``method="other"``.
MAX_TIMED_METHODS = 200

#: The ``component`` label of each topic kind: the role of the worker that consumes it.
COMPONENTS = {
    TopicKind.TASK_EXECUTOR: "service_executor",
    TopicKind.TASK_RETRY: "service_executor",
    TopicKind.TASK_EVENTS: "service_executor",
    TopicKind.TASK_TAG: "service_tag_engine",
    TopicKind.WORKFLOW_CMD: "workflow_state_engine",
    TopicKind.WORKFLOW_ENGINE: "workflow_state_engine",
    TopicKind.WORKFLOW_DELAY: "workflow_state_engine",
    TopicKind.WORKFLOW_EVENTS: "workflow_state_engine",
    TopicKind.WORKFLOW_TASK_EVENTS: "workflow_state_engine",
    TopicKind.WORKFLOW_TASK_EXECUTOR: "workflow_executor",
    TopicKind.WORKFLOW_TAG: "workflow_tag_engine",
}
_BY_PREFIX = {kind.prefix: component for kind, component in COMPONENTS.items()}


def component_of(topic: str) -> str:
    """The ``component`` label of a topic (``other`` for a topic of no worker role)."""
    return _BY_PREFIX.get(topic.partition(":")[0], "other")


class Timer:
    """A histogram's state: counts per bucket (not cumulative) and the sum."""

    __slots__ = ("counts", "total")

    def __init__(self) -> None:
        self.counts = [0] * (len(BUCKETS) + 1)
        self.total = 0.0

    def observe(self, seconds: float) -> None:
        self.counts[bisect_left(BUCKETS, seconds)] += 1
        self.total += seconds

    def buckets(self) -> list[tuple[str, float]]:
        cumulative, out = 0, []
        for le, count in zip(_LE, self.counts, strict=True):
            cumulative += count
            out.append((le, float(cumulative)))
        return out


class TopicMeter:
    """The measures of one subscription (updated by its handler only)."""

    __slots__ = (
        "component",
        "failures",
        "handled",
        "in_flight",
        "redeliveries",
        "retry_later",
        "seconds",
        "service",
        "task_seconds",
        "topic",
    )

    def __init__(self, topic: str) -> None:
        self.topic = topic
        self.component = component_of(topic)
        kind, _, entity = topic.partition(":")
        executor = kind == TopicKind.TASK_EXECUTOR.prefix
        self.handled = 0
        self.failures = 0
        self.retry_later = 0
        self.redeliveries = 0
        self.in_flight = 0
        self.seconds = Timer()
        #: By method, on a task-executor topic.
        self.task_seconds: dict[str, Timer] | None = {} if executor else None
        self.service = entity if executor else None

    def task_timer(self, method: str) -> Timer:
        """The timer of a method of this executor's service (a bounded number of them)."""
        assert self.task_seconds is not None
        if len(self.task_seconds) >= MAX_TIMED_METHODS:
            method = "other"
        timer = self.task_seconds.get(method)
        if timer is None:
            timer = self.task_seconds[method] = Timer()
        return timer


class WorkflowMeter:
    """Instances of one workflow created and ended by this worker's state engine."""

    __slots__ = ("completions", "starts")

    def __init__(self) -> None:
        self.starts = 0
        self.completions = 0


class WorkerMetrics:
    """The Prometheus metrics of one worker, and their HTTP endpoint.

    Args:
        host: the address the endpoint listens on (default: loopback only).
        port: its port (0: any free port, read :attr:`port` once started); None: no endpoint
            (read :attr:`registry`, or :meth:`exposition`, yourself).
        path: the path metrics are served at (``/metrics``).
        registry: where the metrics are registered (default: a new one, this worker's own).

    Raises:
        ConfigurationError: an invalid host, port or path.
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int | None = DEFAULT_METRICS_PORT,
        path: str = "/metrics",
        registry: CollectorRegistry | None = None,
    ) -> None:
        check_endpoint(host, port, path)
        self.host = host
        self.requested_port = port
        self.path = path
        self.registry = registry if registry is not None else CollectorRegistry()
        self._topics: list[TopicMeter] = []
        self._dead_letters: dict[str, int] = {}
        self._workflows: dict[str, WorkflowMeter] = {}
        self._storage: dict[tuple[str, str], Timer] = {}
        self.registry.register(_Collector(self))
        self._server: Any = None

    def topic_meter(self, topic: str) -> TopicMeter:
        """The measures of a (new) subscription to ``topic``."""
        meter = TopicMeter(topic)
        self._topics.append(meter)
        return meter

    def workflow_meter(self, workflow: str) -> WorkflowMeter:
        """The instance counts of ``workflow`` (one per workflow, shared)."""
        meter = self._workflows.get(workflow)
        if meter is None:
            meter = self._workflows[workflow] = WorkflowMeter()
        return meter

    def storage_timer(self, backend: str, operation: str) -> Timer:
        """The latency of one operation of one storage backend (shared)."""
        timer = self._storage.get((backend, operation))
        if timer is None:
            timer = self._storage[backend, operation] = Timer()
        return timer

    def dead_lettered(self, topic: str) -> None:
        """Count a message dead-lettered from ``topic``."""
        self._dead_letters[topic] = self._dead_letters.get(topic, 0) + 1

    def exposition(self) -> bytes:
        """The metrics in Prometheus's text format."""
        return generate_latest(self.registry)

    def families(self) -> Iterator[Metric]:
        """The metric families, built from the measures now."""
        by_topic = ["component", "topic"]
        handled = CounterMetricFamily(
            "infinitic_messages_handled",
            "Messages handled (every delivery, whatever its outcome)",
            labels=by_topic,
        )
        seconds = HistogramMetricFamily(
            "infinitic_message_handling_seconds",
            "Time a handler took for one delivery",
            labels=by_topic,
        )
        in_flight = GaugeMetricFamily(
            "infinitic_messages_in_flight", "Messages being handled now", labels=by_topic
        )
        failures = CounterMetricFamily(
            "infinitic_message_failures",
            "Deliveries whose handler failed (the message is retried, then dead-lettered)",
            labels=by_topic,
        )
        retries = CounterMetricFamily(
            "infinitic_message_retries",
            "Deliveries again: reason=retry_later (came too early, postponed without counting "
            "as a failure) or redelivery (delivered again after a failure or a crash)",
            labels=[*by_topic, "reason"],
        )
        dead_letters = CounterMetricFamily(
            "infinitic_dead_letters", "Messages sent to the dead-letter topic", labels=by_topic
        )
        tasks = HistogramMetricFamily(
            "infinitic_task_duration_seconds",
            "Time a service executor took for one task attempt (its outcome or retry sent, or "
            "applied by the state engine of the same worker)",
            labels=["service", "method"],
        )
        # Several subscriptions of one topic (a workflow's versions) add up.
        merged: dict[str, list[TopicMeter]] = {}
        for meter in self._topics:
            merged.setdefault(meter.topic, []).append(meter)
        for topic, meters in merged.items():
            labels = [meters[0].component, topic]
            handled.add_metric(labels, sum(m.handled for m in meters))
            failures.add_metric(labels, sum(m.failures for m in meters))
            in_flight.add_metric(labels, sum(m.in_flight for m in meters))
            later = sum(m.retry_later for m in meters)
            retries.add_metric([*labels, "retry_later"], later)
            retries.add_metric([*labels, "redelivery"], sum(m.redeliveries for m in meters))
            dead_letters.add_metric(labels, self._dead_letters.get(topic, 0))
            _add_timer(seconds, labels, [m.seconds for m in meters])
        by_method: dict[tuple[str, str], list[Timer]] = {}
        for meter in self._topics:
            for method, timer in (meter.task_seconds or {}).items():
                by_method.setdefault((meter.service or "", method), []).append(timer)
        for (service, method), timers in by_method.items():
            _add_timer(tasks, [service, method], timers)
        for topic, count in self._dead_letters.items():
            if topic not in merged:
                dead_letters.add_metric([component_of(topic), topic], count)
        starts = CounterMetricFamily(
            "infinitic_workflow_starts",
            "Workflow instances created by this worker's state engines",
            labels=["workflow"],
        )
        completions = CounterMetricFamily(
            "infinitic_workflow_completions",
            "Workflow instances ended (every method completed or canceled: state deleted)",
            labels=["workflow"],
        )
        for workflow, w in self._workflows.items():
            starts.add_metric([workflow], w.starts)
            completions.add_metric([workflow], w.completions)
        storage = HistogramMetricFamily(
            "infinitic_storage_operation_seconds",
            "Latency of the storage operations of this worker's engines",
            labels=["backend", "operation"],
        )
        for (backend, operation), timer in self._storage.items():
            _add_timer(storage, [backend, operation], [timer])
        yield from (handled, seconds, in_flight, failures, retries, dead_letters, tasks)
        yield from (starts, completions, storage)

    @property
    def port(self) -> int | None:
        """The port the endpoint listens on once started (None before, or without one)."""
        return self._server.port if self._server is not None else None

    @property
    def url(self) -> str | None:
        """``http://host:port/metrics`` once the endpoint listens, else None."""
        if self._server is None:
            return None
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self._server.port}{self.path}"

    async def start(self) -> None:
        """Start the endpoint (if it has a port); idempotent.

        Raises:
            ConfigurationError: the address cannot be listened on (in use, not local).
        """
        if self._server is not None or self.requested_port is None:
            return
        from infinitic.worker._metrics_server import MetricsServer

        server = MetricsServer(self.exposition, self.host, self.requested_port, self.path)
        await server.start()
        self._server = server

    async def close(self) -> None:
        """Stop the endpoint; idempotent."""
        server, self._server = self._server, None
        if server is not None:
            await server.close()


def _add_timer(family: HistogramMetricFamily, labels: list[str], timers: list[Timer]) -> None:
    each = [t.buckets() for t in timers]
    buckets = [(le, sum(b[i][1] for b in each)) for i, le in enumerate(_LE)]
    family.add_metric(labels, buckets, sum(t.total for t in timers))


class _Collector(Collector):
    def __init__(self, metrics: WorkerMetrics) -> None:
        self._metrics = metrics

    def collect(self) -> Iterator[Metric]:
        return self._metrics.families()


def check_endpoint(host: str, port: int | None, path: str) -> None:
    """Raise ConfigurationError naming what is wrong in an endpoint's settings."""
    if not isinstance(host, str) or not host:
        raise ConfigurationError(f"metrics host must be an address or a host name, got {host!r}")
    if port is not None and (
        isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535
    ):
        raise ConfigurationError(f"metrics port must be an integer in 0..65535, got {port!r}")
    if not isinstance(path, str) or not path.startswith("/"):
        raise ConfigurationError(f"metrics path must start with '/', got {path!r}")


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback addresses."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
