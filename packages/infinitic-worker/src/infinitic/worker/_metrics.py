"""Prometheus metrics of a worker, in a registry of its own (several workers may share a
process), served over HTTP by :mod:`infinitic.worker._metrics_server`.

Every metric is measured from outside the engines: around the handler of each subscription
(messages, time, in flight, failures, retries, task durations), in the dead-letter hook, and
around the storage the engines are given (operation latency, workflow starts and completions).
Label children are bound once per topic, so a message costs a few counter and histogram updates.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

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


@dataclass(slots=True)
class TopicMeter:
    """The metrics of one subscription, labels bound."""

    handled: Any
    seconds: Any
    in_flight: Any
    failures: Any
    retry_later: Any
    redeliveries: Any
    task_seconds: dict[str, Any] | None  # by method, on a task-executor topic
    service: str | None
    task_family: Any = None


class WorkerMetrics:
    """The Prometheus metrics of one worker, and their HTTP endpoint.

    Args:
        host: the address the endpoint listens on (default: loopback only).
        port: its port (0: any free port, read :attr:`port` once started); None: no endpoint
            (read :attr:`registry` yourself).
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
        r = self.registry
        by_topic = ["component", "topic"]
        self.handled = Counter(
            "infinitic_messages_handled",
            "Messages handled (every delivery, whatever its outcome)",
            by_topic,
            registry=r,
        )
        self.handling_seconds = Histogram(
            "infinitic_message_handling_seconds",
            "Time a handler took for one delivery",
            by_topic,
            buckets=BUCKETS,
            registry=r,
        )
        self.in_flight = Gauge(
            "infinitic_messages_in_flight", "Messages being handled now", by_topic, registry=r
        )
        self.failures = Counter(
            "infinitic_message_failures",
            "Deliveries whose handler failed (the message is retried, then dead-lettered)",
            by_topic,
            registry=r,
        )
        self.retries = Counter(
            "infinitic_message_retries",
            "Deliveries again: reason=retry_later (came too early, postponed without counting "
            "as a failure) or redelivery (delivered again after a failure or a crash)",
            [*by_topic, "reason"],
            registry=r,
        )
        self.dead_letters = Counter(
            "infinitic_dead_letters",
            "Messages sent to the dead-letter topic",
            by_topic,
            registry=r,
        )
        self.task_seconds = Histogram(
            "infinitic_task_duration_seconds",
            "Time a service executor took for one task attempt (its outcome or retry sent)",
            ["service", "method"],
            buckets=BUCKETS,
            registry=r,
        )
        self.workflow_starts = Counter(
            "infinitic_workflow_starts",
            "Workflow instances created by this worker's state engines",
            ["workflow"],
            registry=r,
        )
        self.workflow_completions = Counter(
            "infinitic_workflow_completions",
            "Workflow instances ended (every method completed or canceled: state deleted)",
            ["workflow"],
            registry=r,
        )
        self.storage_seconds = Histogram(
            "infinitic_storage_operation_seconds",
            "Latency of the storage operations of this worker's engines",
            ["backend", "operation"],
            buckets=BUCKETS,
            registry=r,
        )
        self._server: Any = None

    def topic_meter(self, topic: str) -> TopicMeter:
        """The bound metrics of a subscription to ``topic``."""
        labels = (component_of(topic), topic)
        kind, _, entity = topic.partition(":")
        executor = kind == TopicKind.TASK_EXECUTOR.prefix
        return TopicMeter(
            handled=self.handled.labels(*labels),
            seconds=self.handling_seconds.labels(*labels),
            in_flight=self.in_flight.labels(*labels),
            failures=self.failures.labels(*labels),
            retry_later=self.retries.labels(*labels, "retry_later"),
            redeliveries=self.retries.labels(*labels, "redelivery"),
            task_seconds={} if executor else None,
            service=entity if executor else None,
            task_family=self.task_seconds if executor else None,
        )

    def dead_lettered(self, topic: str) -> None:
        """Count a message dead-lettered from ``topic``."""
        self.dead_letters.labels(component_of(topic), topic).inc()

    def exposition(self) -> bytes:
        """The metrics in Prometheus's text format."""
        return generate_latest(self.registry)

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
