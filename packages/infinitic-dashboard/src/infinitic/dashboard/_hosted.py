"""The dashboard served by a worker (``dashboard:`` of its configuration, or
:func:`host_on`): a companion of the worker, started once the worker is and closed with it,
with its own event timeline on the worker's events."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterator, Sequence

import uvicorn

from infinitic.common import entity_name
from infinitic.dashboard._app import create_app
from infinitic.dashboard._auth import check_binding
from infinitic.dashboard._timeline import EventTimeline
from infinitic.worker import InfiniticWorker

logger = logging.getLogger("infinitic.dashboard")

#: Seconds the server may take to listen before the worker's start fails.
START_SECONDS = 10.0


class _Server(uvicorn.Server):
    """uvicorn's server without its signal handlers: the worker's process handles signals
    (a stopping worker closes its companions)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class HostedDashboard:
    """The dashboard of a worker's ``workflows`` (names) and ``workflow_classes`` (their
    classes, for properties; their names are shown too), served while the worker runs: built
    before the worker starts, it registers its timeline and itself (a companion) on it.

    Raises:
        ValueError: a host other than loopback without a token.

    Its timeline listens to the events of the worker's own services and workflows with the
    subscription ``infinitic-dashboard-<worker name>`` (workers that host a dashboard need
    distinct names: two of one name would share the subscription and each see part).
    """

    def __init__(
        self,
        worker: InfiniticWorker,
        *,
        workflows: Sequence[str] = (),
        host: str = "127.0.0.1",
        port: int = 8080,
        token: str | None = None,
        page_size: int = 50,
        timeline_events: int = 200,
        timeline_seconds: float = 3600.0,
        metrics_urls: Sequence[str] = (),
        workflow_classes: Sequence[type] = (),
    ) -> None:
        check_binding(host, token)
        self._worker = worker
        self._host, self._port, self._token = host, port, token
        self._page_size = page_size
        self._metrics_urls = list(metrics_urls)
        self._classes = list(workflow_classes)
        self._workflows = sorted({*workflows, *(entity_name(c) for c in workflow_classes)})
        self.timeline = EventTimeline(
            max_events=timeline_events, retention_seconds=timeline_seconds
        )
        worker.add_event_listener(
            self.timeline, subscription_name=f"infinitic-dashboard-{worker.name}"
        )
        worker.add_companion(self)
        self._server: _Server | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def url(self) -> str | None:
        """Where it is served, once started (the actual port when 0 was asked)."""
        server = self._server
        if server is None or not server.started or not server.servers:
            return None
        port = server.servers[0].sockets[0].getsockname()[1]
        return f"http://{self._host}:{port}/"

    async def start(self) -> None:
        """Serve, once the worker runs; returns when it listens.

        Raises:
            OSError: it cannot listen (the port is taken).
        """
        worker = self._worker
        urls = list(self._metrics_urls)
        if worker.metrics is not None and worker.metrics.url is not None:
            urls.append(worker.metrics.url)
        app = create_app(
            worker.client,
            worker.storage,
            self._workflows,
            timeline=self.timeline,
            token=self._token,
            page_size=self._page_size,
            metrics_urls=urls,
            workflow_classes=self._classes,
        )
        config = uvicorn.Config(
            app, host=self._host, port=self._port, log_level="warning", lifespan="off"
        )
        self._server = server = _Server(config)
        self._task = task = asyncio.create_task(server.serve())
        for _ in range(int(START_SECONDS / 0.01)):
            if server.started or task.done():
                break
            await asyncio.sleep(0.01)
        if not server.started:
            await self.close()
            raise OSError(
                f"the dashboard could not listen on {self._host}:{self._port} "
                "(port taken? see the log above)"
            )
        logger.info("worker %s serves the dashboard on %s", worker.name, self.url)

    async def close(self) -> None:
        """Stop serving; idempotent."""
        server, task = self._server, self._task
        self._task = None
        if server is None or task is None:
            return
        server.should_exit = True
        with contextlib.suppress(Exception, asyncio.CancelledError):
            await asyncio.wait_for(task, 10)


#: ``host_on(worker, port=..., workflow_classes=[...])``: the worker serves the dashboard while
#: it runs (call it before starting the worker).
host_on = HostedDashboard
