"""``infinitic dashboard -c infinitic.yml [--host --port --token]``: serve the dashboard of the
workflows of a workers' configuration file.

It reads the file's ``transport:`` (to send the actions), ``storage:`` (states and tags) and
``workflows:`` (the names shown). With the in-memory transport, nothing else can reach the
workers, so the command runs the file's services and workflows itself while it serves, with the
event timeline listening to them. With a broker, it runs a worker of the timeline only: an event
listener on the events topics of the file's services and workflows, run by other processes
(subscription ``infinitic-dashboard``, so a dashboard started again goes on where it stopped).

The ``infinitic`` command of infinitic-worker finds this command when this package is installed.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import sys
from collections.abc import AsyncIterator, Sequence

import click

from infinitic.client import InfiniticClient, load_yaml
from infinitic.dashboard._app import create_app
from infinitic.dashboard._auth import check_binding
from infinitic.dashboard._serve import serve
from infinitic.dashboard._timeline import EventTimeline
from infinitic.exceptions import ConfigurationError
from infinitic.storage import Storage
from infinitic.transport import apply_env_overrides, normalize_key
from infinitic.worker import InfiniticConfig, InfiniticWorker, load_config
from infinitic.worker.cli import config_option

logger = logging.getLogger("infinitic.dashboard")

#: The subscription of the timeline on the events topics: a dashboard started again goes on
#: where it stopped; two dashboards on one broker need distinct names (they would share it).
TIMELINE_SUBSCRIPTION = "infinitic-dashboard"


@contextlib.asynccontextmanager
async def connect(
    path: str, timeline: EventTimeline
) -> AsyncIterator[tuple[InfiniticClient, Storage, list[str], EventTimeline | None, list[str]]]:
    """The client, storage, workflow names, timeline and metrics endpoint (of the workers run
    here) of the configuration at ``path`` (see the module)."""
    config: InfiniticConfig = load_config(path)
    names = [w.name for w in config.workflows if w.name]
    in_memory = any(normalize_key(str(k)) == "inmemory" for k in config.transport_section)
    if in_memory:
        worker = InfiniticWorker.from_config(config)
        worker.add_event_listener(timeline, subscription_name=TIMELINE_SUBSCRIPTION)
        async with worker:
            url = worker.metrics.url if worker.metrics is not None else None
            yield worker.client, worker.storage, names, timeline, [url] if url else []
        return
    bare = config.model_copy(
        update={"services": [], "workflows": [], "event_listener": None, "metrics": None}
    )
    # A worker that runs only the timeline, listening to the events of the file's services and
    # workflows (run by other processes); it builds and owns the storage and the transport.
    holder = InfiniticWorker.from_config(bare)
    services = [s.name for s in config.services if s.name]
    if not names and not services:  # nothing to listen to: no timeline
        client = InfiniticClient.from_config(apply_env_overrides(load_yaml(path)))
        try:
            await client.start()
            yield client, holder.storage, names, None, []
        finally:
            await client.close()
            await holder.close()
        return
    holder.add_event_listener(
        timeline,
        subscription_name=TIMELINE_SUBSCRIPTION,
        workflows={"allow": names},
        services={"allow": services},
    )
    async with holder:
        yield holder.client, holder.storage, names, timeline, []


def workflow_classes(config: InfiniticConfig) -> list[type]:
    """The classes of the configuration's workflows (their versions too), to show properties;
    one that cannot be imported here is left out, with a warning."""
    classes: list[type] = []
    for workflow in config.workflows:
        for path in workflow.class_paths:
            module, _, attribute = path.rpartition(".")
            try:
                found = getattr(importlib.import_module(module), attribute)
            except (ImportError, AttributeError, ValueError) as e:
                logger.warning("no properties for %s: cannot import %s: %s", workflow.name, path, e)
                continue
            if isinstance(found, type):
                classes.append(found)
    return classes


async def run(
    path: str,
    host: str,
    port: int,
    token: str | None,
    *,
    page_size: int = 50,
    timeline_events: int = 200,
    timeline_seconds: float = 3600.0,
    metrics_urls: Sequence[str] = (),
) -> None:
    """Serve the dashboard of the configuration at ``path`` until interrupted."""
    check_binding(host, token)
    timeline = EventTimeline(max_events=timeline_events, retention_seconds=timeline_seconds)
    async with connect(path, timeline) as (client, storage, names, kept, own_metrics):
        app = create_app(
            client,
            storage,
            names,
            timeline=kept,
            token=token,
            page_size=page_size,
            metrics_urls=[*metrics_urls, *own_metrics],
            workflow_classes=workflow_classes(load_config(path)),
        )
        await serve(app, host=host, port=port)


@click.command(name="dashboard", context_settings={"help_option_names": ["-h", "--help"]})
@config_option(help_text="the workers' YAML configuration file")
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to bind.")
@click.option("--port", default=8080, show_default=True, type=int, help="Port (0: any free).")
@click.option(
    "--token",
    envvar="INFINITIC_DASHBOARD_TOKEN",
    show_envvar=True,
    help="Required from every request (needed when bound to another interface than loopback).",
)
@click.option("--page-size", default=50, show_default=True, type=click.IntRange(1, 500))
@click.option(
    "--metrics-url",
    "metrics_urls",
    multiple=True,
    help="A worker's Prometheus endpoint for the metrics page (repeat for each worker).",
)
@click.option(
    "--timeline-events",
    default=200,
    show_default=True,
    type=click.IntRange(1),
    help="Events kept per instance.",
)
@click.option(
    "--timeline-seconds",
    default=3600.0,
    show_default=True,
    type=click.FloatRange(min=1),
    help="How long an instance's events are kept after its last one.",
)
def dashboard(
    config: str,
    host: str,
    port: int,
    token: str | None,
    page_size: int,
    metrics_urls: tuple[str, ...],
    timeline_events: int,
    timeline_seconds: float,
) -> None:
    """Serve a web dashboard of the workflows of a configuration: instances by tag or id,
    their state and events, and actions (cancel, retries, timers, signals)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    try:
        check_binding(host, token)
        asyncio.run(
            run(
                config,
                host,
                port,
                token,
                page_size=page_size,
                timeline_events=timeline_events,
                timeline_seconds=timeline_seconds,
                metrics_urls=metrics_urls,
            )
        )
    except (ValueError, ConfigurationError) as e:
        click.echo(f"infinitic dashboard: {e}", err=True)
        sys.exit(2)
    except KeyboardInterrupt:
        pass
