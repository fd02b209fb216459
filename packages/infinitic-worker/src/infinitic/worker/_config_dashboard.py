"""``dashboard:`` of a worker's configuration: the worker serves the web dashboard of its
workflows (package infinitic-dashboard), beside its engines::

    dashboard:                                   # http://127.0.0.1:8080/
    dashboard: {host: 0.0.0.0, port: 8080, token: ${DASHBOARD_TOKEN}}   # refused without a token
    dashboard: {enabled: false}                  # off (INFINITIC__DASHBOARD__ENABLED=false)
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr
from pydantic.alias_generators import to_camel

from infinitic.exceptions import ConfigurationError

if TYPE_CHECKING:
    from infinitic.worker._worker import InfiniticWorker


class DashboardConfig(BaseModel):
    """``dashboard``: the web dashboard served by the worker.

    Attributes:
        enabled: serve it (default when the section is present).
        host: the address it listens on (loopback by default; any other needs ``token``).
        port: its port.
        token: required from every request when given.
        page_size: instances per page of a tag.
        timeline_events: events kept per instance by its timeline.
        timeline_seconds: how long an ended instance's events are kept.
        metrics_urls: other workers' Prometheus endpoints for its metrics page (this worker's
            own, with ``metrics:``, is added).
    """

    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True
    )

    enabled: bool = True
    host: str = Field(default="127.0.0.1", min_length=1)
    port: int = Field(default=8080, ge=0, le=65535)
    token: SecretStr | None = None
    page_size: int = Field(default=50, ge=1, le=500)
    timeline_events: int = Field(default=200, ge=1)
    timeline_seconds: float = Field(default=3600.0, gt=0)
    metrics_urls: list[str] = Field(default_factory=list)

    def attach(
        self, worker: InfiniticWorker, workflows: list[str], workflow_classes: list[type]
    ) -> None:
        """Have ``worker`` serve the dashboard of ``workflows`` (nothing when disabled).

        Raises:
            ConfigurationError: the package is not installed, or a non-loopback host has no
                token.
        """
        if not self.enabled:
            return
        try:
            dashboard: Any = importlib.import_module("infinitic.dashboard")
        except ImportError:  # a distribution of its own, which imports this one
            raise ConfigurationError(
                "dashboard: the dashboard is a package of its own: pip install infinitic-dashboard"
            ) from None
        token = self.token.get_secret_value() if self.token is not None else None
        try:
            dashboard.check_binding(self.host, token)
        except (ValueError, ConfigurationError) as e:
            raise ConfigurationError(f"dashboard: {e}") from None
        dashboard.host_on(
            worker,
            workflows=workflows,
            host=self.host,
            port=self.port,
            token=token,
            page_size=self.page_size,
            timeline_events=self.timeline_events,
            timeline_seconds=self.timeline_seconds,
            metrics_urls=self.metrics_urls,
            workflow_classes=workflow_classes,
        )
