"""Infinitic for Python: a web dashboard to see and steer workflows.

``create_app(client, storage, ["Order"], timeline=timeline)`` is an ASGI application (Starlette,
pages rendered on the server, htmx shipped in the package); ``EventTimeline`` is an event
listener keeping the recent events of each instance, so that ended ones stay visible;
``MetricsScraper`` reads workers' Prometheus endpoints for the metrics page;
``infinitic dashboard -c infinitic.yml`` serves it from a workers' configuration, and
``host_on(worker)`` (or ``dashboard:`` in a worker's configuration) from a worker.
"""

import importlib.metadata

from infinitic.dashboard._app import Dashboard, create_app
from infinitic.dashboard._auth import check_binding
from infinitic.dashboard._hosted import HostedDashboard, host_on
from infinitic.dashboard._metrics import MetricsScraper, Scrape, TopicRow, histogram_quantile
from infinitic.dashboard._serve import serve
from infinitic.dashboard._timeline import EventTimeline, TimelineEvent, WorkflowSummary

__version__: str = importlib.metadata.version("infinitic-dashboard")

__all__ = [
    "Dashboard",
    "EventTimeline",
    "HostedDashboard",
    "MetricsScraper",
    "Scrape",
    "TimelineEvent",
    "TopicRow",
    "WorkflowSummary",
    "check_binding",
    "create_app",
    "histogram_quantile",
    "host_on",
    "serve",
]
