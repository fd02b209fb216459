"""The dashboard's web application (Starlette, pages rendered on the server, htmx for the
actions and the refreshes).

Pages: the workflows (``/``), the instances of a workflow with a tag, page by page from the tag
storage (``/workflows/<name>?tag=<tag>``; ``?id=<id>`` opens an instance), an instance
(``/workflows/<name>/instances/<id>``: its state and its event timeline). Actions (POST, asked
for confirmation by the page): ``cancel``, ``retry-workflow-task``, ``retry-tasks``,
``complete-timers``, ``signal``.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

from jinja2 import Environment, PackageLoader, select_autoescape
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from infinitic.client import InfiniticClient
from infinitic.common import ENGINE_SUBSCRIPTION as WORKER_SUBSCRIPTION
from infinitic.common import entity_name, read_workflow_state
from infinitic.common.tag_messages import workflow_tag_key
from infinitic.dashboard._auth import TokenMiddleware
from infinitic.dashboard._metrics import MetricsScraper, TopicRow
from infinitic.dashboard._timeline import EventTimeline
from infinitic.dashboard._views import event_data, failure_text, instance_view, to_json
from infinitic.services import name as wire_name
from infinitic.storage import Storage
from infinitic.workflows import Channel, Workflow

logger = logging.getLogger("infinitic.dashboard")

ACTIONS = ("cancel", "retry-workflow-task", "retry-tasks", "complete-timers", "signal")
MAX_PAGE_SIZE = 500
#: Instances whose replayed properties are kept (the most recently shown).
REPLAYED_KEPT = 256


class Dashboard:
    """What the pages read and steer: a client, the workers' storage (states and tags), the
    workflows shown, and an event timeline (optional: without one, an ended instance is
    "completed or unknown")."""

    def __init__(
        self,
        client: InfiniticClient,
        storage: Storage,
        workflows: Sequence[str],
        *,
        timeline: EventTimeline | None = None,
        page_size: int = 50,
        refresh_seconds: float = 2.0,
        metrics: MetricsScraper | None = None,
        workflow_classes: Sequence[type] = (),
    ) -> None:
        if not 1 <= page_size <= MAX_PAGE_SIZE:
            raise ValueError(f"page_size must be within 1..{MAX_PAGE_SIZE}")
        self.client = client
        self.storage = storage
        self.workflows = sorted(set(workflows))
        self.timeline = timeline
        self.page_size = page_size
        self.refresh_seconds = refresh_seconds
        self.metrics = metrics
        self.classes: dict[str, list[type]] = {}
        for cls in workflow_classes:  # the versions of a workflow share its name
            self.classes.setdefault(entity_name(cls), []).append(cls)
        self._replayed: OrderedDict[
            tuple[str, str, int], tuple[tuple[Any, Any, bool], dict[str, str] | str]
        ] = OrderedDict()
        self._stand_ins: dict[tuple[str, str], type] = {}
        self._templates = Environment(
            loader=PackageLoader("infinitic.dashboard", "templates"),
            autoescape=select_autoescape(default=True),
        )
        self._templates.filters["json"] = to_json
        self._templates.filters["failure"] = failure_text
        self._templates.filters["event_data"] = event_data

    def stand_in(self, workflow_name: str, channel: str = "") -> type:
        """A workflow class of that name (with that channel) for the client's stubs: the
        dashboard needs no workflow code."""
        key = (workflow_name, channel)
        found = self._stand_ins.get(key)
        if found is None:
            attrs: dict[str, Any] = {"__module__": __name__}
            if channel:
                attrs[channel] = Channel[Any]()
            found = wire_name(workflow_name)(type(workflow_name, (Workflow,), attrs))
            self._stand_ins[key] = found
        return found

    def render(self, template: str, status: int = 200, **values: Any) -> HTMLResponse:
        page = self._templates.get_template(template).render(
            workflows=self.workflows,
            timeline=self.timeline is not None,
            refresh=f"{self.refresh_seconds:g}s",
            has_metrics=self.metrics is not None,
            **values,
        )
        return HTMLResponse(page, status_code=status)

    # -- pages ----------------------------------------------------------------------------------

    async def index(self, request: Request) -> Response:
        recent = self.timeline.recent(limit=20) if self.timeline is not None else []
        return self.render("index.html", recent=recent)

    def _workflow(self, request: Request) -> str | None:
        name = str(request.path_params["name"])
        return name if name in self.workflows else None

    async def instances(self, request: Request) -> Response:
        name = self._workflow(request)
        if name is None:
            return self.render("message.html", 404, message="unknown workflow")
        workflow_id = request.query_params.get("id", "").strip()
        if workflow_id:
            return RedirectResponse(f"/workflows/{name}/instances/{workflow_id}", 303)
        tag = request.query_params.get("tag", "").strip()
        after = request.query_params.get("after") or None
        ids: list[str] = []
        next_cursor: str | None = None
        count: int | None = None
        if tag:
            key = workflow_tag_key(name, tag)
            page = await self.storage.key_set.page(key, after=after, limit=self.page_size)
            ids, next_cursor = page.members, page.next_cursor
            count = await self.storage.key_set.count(key)
        rows = [(i, self.timeline.summary(i) if self.timeline else None) for i in ids]
        recent = self.timeline.recent(name, limit=20) if self.timeline is not None else []
        return self.render(
            "instances.html",
            name=name,
            tag=tag,
            after=after,
            rows=rows,
            next_cursor=next_cursor,
            count=count,
            recent=recent,
        )

    async def instance(self, request: Request) -> Response:
        name = self._workflow(request)
        if name is None:
            return self.render("message.html", 404, message="unknown workflow")
        workflow_id = str(request.path_params["workflow_id"])
        state = await read_workflow_state(self.storage.key_value, name, workflow_id)
        values: dict[str, Any] = {
            "name": name,
            "workflow_id": workflow_id,
            "view": instance_view(state) if state is not None else None,
            "properties": await self._properties(name, state) if state is not None else None,
            "summary": self.timeline.summary(workflow_id) if self.timeline else None,
            "events": self.timeline.events(workflow_id) if self.timeline else [],
        }
        if request.query_params.get("fragment"):
            return self.render("instance_body.html", **values)
        return self.render("instance.html", **values)

    async def _properties(self, name: str, state: dict[str, Any]) -> dict[str, str] | str | None:
        """An instance's properties, rebuilt by replaying its history against its workflow's
        code (in a thread: a long history takes a while); None without the class, the reason
        as text when the replay fails."""
        classes = self.classes.get(name)
        if not classes:
            return None
        # The same history gives the same properties: an open page refreshes every few seconds,
        # the replay runs again only when the instance has moved on.
        key = (name, str(state.get("workflow_id")), len(state.get("steps") or ()))
        seen = (
            state.get("incarnation"),
            state.get("running_task_id"),  # a running or failed last step is not replayed
            state.get("failed_task") is not None,
        )
        cached = self._replayed.get(key)
        if cached is not None and cached[0] == seen:
            self._replayed.move_to_end(key)
            return cached[1]
        from infinitic.worker.testing import replay_properties

        found: dict[str, str] | str
        try:
            replayed = await asyncio.to_thread(replay_properties, classes, state)
            found = {k: to_json(v) for k, v in sorted(replayed.items())}
        except Exception as e:  # a changed code, a corrupted history: said on the page
            found = f"cannot rebuild them: {e}"
        self._replayed[key] = (seen, found)
        while len(self._replayed) > REPLAYED_KEPT:
            self._replayed.popitem(last=False)
        return found

    async def metrics_page(self, request: Request) -> Response:
        if self.metrics is None:
            return self.render(
                "message.html", 404, message="no metrics endpoint given (--metrics-url)"
            )
        scrape = await self.metrics.scrape()
        await self._read_backlogs(scrape.rows)
        template = "metrics_body.html" if request.query_params.get("fragment") else "metrics.html"
        return self.render(
            template,
            scrape=scrape,
            urls=self.metrics.urls,
            has_backlog=any(r.backlog is not None for r in scrape.rows),
        )

    async def _read_backlogs(self, rows: list[TopicRow]) -> None:
        """Each topic's backlog on the workers' subscription, where the broker tells it (the
        in-memory transport, Apache Pulsar with its admin API; not pulsar-lite)."""
        transport = self.client.transport
        backlogs = await asyncio.gather(
            *(transport.backlog(r.topic, WORKER_SUBSCRIPTION) for r in rows),
            return_exceptions=True,
        )
        for row, backlog in zip(rows, backlogs, strict=True):
            row.backlog = backlog if isinstance(backlog, int) else None

    # -- actions --------------------------------------------------------------------------------

    async def action(self, request: Request) -> Response:
        name = self._workflow(request)
        action = str(request.path_params["action"])
        if name is None or action not in ACTIONS:
            return self.render("message.html", 404, message="unknown workflow or action")
        workflow_id = str(request.path_params["workflow_id"])
        form = await request.form()
        try:
            done = await self._act(name, workflow_id, action, form)
        except ValueError as e:
            return self.render("message.html", 400, message=str(e), error=True)
        except Exception as e:  # shown to the user, who may try again
            logger.exception("dashboard action %s on %s %s failed", action, name, workflow_id)
            return self.render("message.html", 502, message=f"{action} failed: {e}", error=True)
        logger.info("dashboard: %s on %s %s", action, name, workflow_id)
        return self.render("message.html", message=done)

    async def _act(self, name: str, workflow_id: str, action: str, form: Any) -> str:
        client = self.client
        if action == "signal":
            channel = str(form.get("channel", "")).strip()
            if not channel.isidentifier() or channel.startswith("_"):
                raise ValueError(f"{channel!r} is not a channel name")
            try:
                value = json.loads(str(form.get("value", "")))
            except ValueError as e:
                raise ValueError(f"the signal is not JSON: {e}") from e
            stub: Any = client.get_workflow_by_id(self.stand_in(name, channel), workflow_id)
            signal_id = await getattr(stub, channel).send(value)
            return f"signal {signal_id} sent to channel {channel}"
        stub = client.get_workflow_by_id(self.stand_in(name), workflow_id)
        if action == "cancel":
            await client.cancel(stub)
            return "cancel sent"
        if action == "retry-workflow-task":
            await client.retry_workflow_task(stub)
            return "retry of the workflow task sent"
        if action == "retry-tasks":
            status = str(form.get("status") or "failed")
            await client.retry_tasks(stub, status=status)
            return f"retry of the {status} tasks sent"
        await client.complete_timers(stub)
        return "completion of the timers sent"


def create_app(
    client: InfiniticClient,
    storage: Storage,
    workflows: Sequence[str],
    *,
    timeline: EventTimeline | None = None,
    token: str | None = None,
    page_size: int = 50,
    refresh_seconds: float = 2.0,
    metrics_urls: Sequence[str] = (),
    workflow_classes: Sequence[type] = (),
) -> Starlette:
    """The dashboard as an ASGI application (serve it with uvicorn, or :func:`serve`).

    Args:
        client: a started client on the workers' transport (sends the actions).
        storage: the workers' storage (states, and the tags of the workflows' tag engines).
        workflows: the names of the workflows shown.
        timeline: an event listener registered on a worker (keeps ended instances visible).
        token: required from every request when given (see ``infinitic.dashboard._auth``).
        page_size: instances per page of a tag.
        refresh_seconds: how often an instance's page reloads its state and events.
        metrics_urls: workers' Prometheus endpoints, for the metrics page (``/metrics``).
        workflow_classes: the workflows' classes (their versions too), to show an instance's
            properties, rebuilt by replaying its history (a state does not store them).
    """
    from importlib.resources import files

    dashboard = Dashboard(
        client,
        storage,
        workflows,
        timeline=timeline,
        page_size=page_size,
        refresh_seconds=refresh_seconds,
        metrics=MetricsScraper(metrics_urls) if metrics_urls else None,
        workflow_classes=workflow_classes,
    )
    static = StaticFiles(directory=str(files("infinitic.dashboard") / "static"))
    routes = [
        Route("/", dashboard.index),
        Route("/metrics", dashboard.metrics_page),
        Route("/workflows/{name}", dashboard.instances),
        Route("/workflows/{name}/instances/{workflow_id}", dashboard.instance),
        Route(
            "/workflows/{name}/instances/{workflow_id}/{action}",
            dashboard.action,
            methods=["POST"],
        ),
        Mount("/static", app=static, name="static"),
    ]
    app = Starlette(routes=routes, middleware=[Middleware(TokenMiddleware, token=token)])
    app.state.dashboard = dashboard
    return app
