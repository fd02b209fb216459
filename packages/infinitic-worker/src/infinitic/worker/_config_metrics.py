"""``metrics:`` of a worker's configuration: its Prometheus endpoint.

Metrics are off unless the section is present (no port is opened by surprise, and two workers
on one host would otherwise fight for the default port)::

    metrics:                # on, at http://127.0.0.1:9464/metrics
    metrics: {host: 0.0.0.0, port: 9100}   # reachable from other hosts
    metrics: {enabled: false}              # off (INFINITIC__METRICS__ENABLED=false)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic.alias_generators import to_camel

from infinitic.worker._metrics import DEFAULT_METRICS_PORT, WorkerMetrics


class MetricsConfig(BaseModel):
    """``metrics``: the worker's Prometheus metrics and their HTTP endpoint.

    Attributes:
        enabled: measure and serve (default when the section is present).
        host: the address the endpoint listens on (loopback by default; ``0.0.0.0`` for
            every interface).
        port: its port (0: any free port, logged at start).
        path: the path metrics are served at.
    """

    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True
    )

    enabled: bool = True
    host: str = Field(default="127.0.0.1", min_length=1)
    port: int = Field(default=DEFAULT_METRICS_PORT, ge=0, le=65535)
    path: str = "/metrics"

    @field_validator("path")
    @classmethod
    def _absolute(cls, value: str) -> str:
        if not value.startswith("/"):
            raise ValueError(f"path must start with '/', got {value!r}")
        return value

    def build(self) -> WorkerMetrics | None:
        """The worker's metrics (None when disabled)."""
        if not self.enabled:
            return None
        return WorkerMetrics(host=self.host, port=self.port, path=self.path)


def empty_sections_on(data: Any, *names: str) -> Any:
    """A section among ``names`` (``metrics:``, ``dashboard:``) with nothing after it is on, with
    its defaults."""
    if isinstance(data, Mapping):
        return {k: ({} if v is None and str(k).lower() in names else v) for k, v in data.items()}
    return data
