"""``infinitic workflow ...`` and ``infinitic task ...``: client operations from the command
line, over a client configuration (the ``transport:`` section workers read, and ``storage:``
for ``status``)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import click

from infinitic.client import InfiniticClient
from infinitic.common import entity_name
from infinitic.worker._cli_common import (
    EXIT_FAILED,
    EXIT_OK,
    config_option,
    json_option,
    parse_value,
    run_command,
    to_json,
)
from infinitic.worker._cli_session import for_each, open_session

_CONFIG_HELP = "the client's YAML configuration (a worker's file works)"


@click.group("workflow")
def workflow_group() -> None:
    """Start workflows, read their status, cancel or retry them.

    WORKFLOW is a name listed under workflows: in the configuration, a dotted class path
    (package.module.Class), or (except for start) the workflow's name. Instances are named by
    --id (repeated), --ids-file (one id a line, - for standard input) or --tag.
    """


@click.group("task")
def task_group() -> None:
    """Operations on service tasks."""


def _targets(f: Callable[..., Any]) -> Callable[..., Any]:
    f = click.option("--tag", help="Every instance with this tag.")(f)
    f = click.option(
        "--ids-file",
        type=click.File("r"),
        help="A file of instance ids, one a line (- reads standard input).",
    )(f)
    return click.option("--id", "ids", multiple=True, help="An instance id (repeatable).")(f)


def _chosen(ids: tuple[str, ...], ids_file: Any, tag: str | None) -> list[str] | None:
    """The ids named, or None when a tag is named; a usage error unless exactly one way."""
    listed = list(ids)
    if ids_file is not None:
        listed += [line.strip() for line in ids_file if line.strip()]
    if tag is not None and (listed or ids_file is not None):
        raise click.UsageError("name instances by --id/--ids-file or by --tag, not both")
    if tag is None and not listed:
        raise click.UsageError("name instances with --id, --ids-file or --tag")
    return None if tag is not None else list(dict.fromkeys(listed))


def _report(
    as_json: bool,
    workflow: str,
    verb: str,
    ids: list[str] | None,
    tag: str | None,
    errors: dict[str, str],
) -> int:
    if as_json:
        outcome: dict[str, Any] = {"workflow": workflow, "operation": verb}
        if ids is None:
            outcome["tag"] = tag
        else:
            outcome["ids"] = ids
            outcome["failed"] = errors
        click.echo(to_json(outcome))
    elif ids is None:
        click.echo(f"{verb}: sent to every {workflow} tagged {tag!r}")
    else:
        done = len(ids) - len(errors)
        click.echo(f"{verb}: sent to {done} of {len(ids)} {workflow} instance(s)")
        for workflow_id, error in errors.items():
            click.echo(f"{workflow_id}: {error}", err=True)
    return EXIT_FAILED if errors else EXIT_OK


def _run_on_targets(
    config: str,
    workflow: str,
    ids: tuple[str, ...],
    ids_file: Any,
    tag: str | None,
    as_json: bool,
    verb: str,
    act: Callable[[InfiniticClient, object], Awaitable[None]],
) -> None:
    chosen = _chosen(ids, ids_file, tag)

    async def work() -> int:
        async with open_session(config) as session:
            cls = session.workflow(workflow, need_class=False)
            client = session.client
            name = entity_name(cls)
            if chosen is None:
                assert tag is not None
                await act(client, client.get_workflow_by_tag(cls, tag))
                return _report(as_json, name, verb, None, tag, {})

            async def one(workflow_id: str) -> None:
                await act(client, client.get_workflow_by_id(cls, workflow_id))

            errors = await for_each(chosen, one, label=f"{verb} {name}")
            return _report(as_json, name, verb, chosen, None, errors)

    run_command(work())


@workflow_group.command("start")
@config_option(help_text=_CONFIG_HELP)
@click.argument("workflow")
@click.argument("method")
@click.argument("args", nargs=-1)
@click.option("--tag", "tags", multiple=True, help="A tag of the new instance (repeatable).")
@click.option("--meta", multiple=True, help="KEY=VALUE metadata of the new instance (repeatable).")
@click.option("--wait", is_flag=True, help="Wait for the method's result and print it.")
@click.option("--timeout", type=float, help="Seconds to wait with --wait (default: forever).")
@json_option
def start(
    config: str,
    workflow: str,
    method: str,
    args: tuple[str, ...],
    tags: tuple[str, ...],
    meta: tuple[str, ...],
    wait: bool,
    timeout: float | None,
    as_json: bool,
) -> None:
    """Start a new instance of WORKFLOW running METHOD with ARGS (each a JSON value, or text);
    print its id (and its result with --wait). Put -- before arguments starting with -."""
    metadata: dict[str, bytes] = {}
    for item in meta:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise click.UsageError(f"--meta {item!r}: expected KEY=VALUE")
        metadata[key] = value.encode()
    values = [parse_value(a) for a in args]

    async def work() -> int:
        async with open_session(config) as session:
            cls = session.workflow(workflow, need_class=True)
            client = session.client
            stub: Any = client.new_workflow(cls, tags=tags or None, meta=metadata or None)
            deferred = await client.dispatch(getattr(stub, method), *values)
            outcome: dict[str, Any] = {
                "workflow": entity_name(cls),
                "method": method,
                "id": deferred.id,
            }
            if not wait:
                click.echo(to_json(outcome) if as_json else deferred.id)
                return EXIT_OK
            try:
                async with asyncio.timeout(timeout):
                    outcome["result"] = await deferred
            except Exception as e:
                outcome["error"] = f"{type(e).__name__}: {e}"
                if as_json:
                    click.echo(to_json(outcome))
                else:
                    click.echo(deferred.id)
                    click.echo(f"infinitic: {outcome['error']}", err=True)
                return EXIT_FAILED
            click.echo(
                to_json(outcome) if as_json else f"{deferred.id}\n{to_json(outcome['result'])}"
            )
            return EXIT_OK

    run_command(work())


def _summary(name: str, workflow_id: str, state: dict[str, Any] | None) -> dict[str, Any]:
    if state is None:
        return {"workflow": name, "id": workflow_id, "status": "unknown"}
    runs = state.get("method_runs") or {}
    commands = state.get("commands") or {}
    failed = state.get("failed_task")
    return {
        "workflow": name,
        "id": workflow_id,
        "status": "failed" if failed else "running",
        "tags": state.get("tags") or [],
        "methods": [
            {
                "method": r.get("method_name"),
                "methodRunId": r.get("method_run_id"),
                "status": r.get("status"),
            }
            for r in runs.values()
        ],
        "ongoing": sorted(
            f"{c.get('kind')} {c.get('name') or ''}".strip()
            for c in commands.values()
            if c.get("status") == "ongoing"
        ),
        "failure": (failed or {}).get("message") if failed else None,
    }


@workflow_group.command("status")
@config_option(help_text=_CONFIG_HELP + "; its storage: section is read")
@click.argument("workflow")
@_targets
@json_option
def status(
    config: str,
    workflow: str,
    ids: tuple[str, ...],
    ids_file: Any,
    tag: str | None,
    as_json: bool,
) -> None:
    """Show the status of instances, read from the workers' storage: running, failed (a
    workflow task failed: see retry-task), or unknown (never started, or finished)."""
    chosen = _chosen(ids, ids_file, tag)

    async def work() -> int:
        async with open_session(config) as session:
            cls = session.workflow(workflow, need_class=False)
            name = entity_name(cls)
            targets = chosen
            if targets is None:
                assert tag is not None
                targets = await session.client.get_ids(session.client.get_workflow_by_tag(cls, tag))
            summaries: dict[str, dict[str, Any]] = {}

            async def one(workflow_id: str) -> None:
                summaries[workflow_id] = _summary(
                    name, workflow_id, await session.state(name, workflow_id)
                )

            errors = await for_each(targets, one, label=f"status {name}")
            found = [summaries[i] for i in targets if i in summaries]
            _print_status(found, errors, as_json)
            return EXIT_FAILED if errors else EXIT_OK

    run_command(work())


def _print_status(found: list[dict[str, Any]], errors: dict[str, str], as_json: bool) -> None:
    if as_json:
        click.echo(to_json(found if not errors else {"instances": found, "failed": errors}))
    else:
        for s in found:
            methods = ", ".join(f"{m['method']} {m['status']}" for m in s.get("methods", []))
            line = f"{s['id']} {s['status']}"
            if methods:
                line += f": {methods}"
            if s.get("ongoing"):
                line += f"; waiting for {', '.join(s['ongoing'])}"
            if s.get("failure"):
                line += f"; failure: {s['failure']}"
            click.echo(line)
    for workflow_id, error in errors.items():
        click.echo(f"{workflow_id}: {error}", err=True)


def _simple(verb: str, summary: str, act: Callable[..., Awaitable[None]]) -> None:
    @workflow_group.command(verb, help=summary)
    @config_option(help_text=_CONFIG_HELP)
    @click.argument("workflow")
    @_targets
    @json_option
    def command(
        config: str,
        workflow: str,
        ids: tuple[str, ...],
        ids_file: Any,
        tag: str | None,
        as_json: bool,
    ) -> None:
        _run_on_targets(config, workflow, ids, ids_file, tag, as_json, verb, act)


_simple(
    "cancel",
    "Cancel instances: their method runs end canceled, and their child workflows too.",
    lambda client, stub: client.cancel(stub),
)
_simple(
    "retry-task",
    "Run again the workflow task that failed (after deploying fixed workflow code).",
    lambda client, stub: client.retry_workflow_task(stub),
)


@workflow_group.command("retry-tasks")
@config_option(help_text=_CONFIG_HELP)
@click.argument("workflow")
@_targets
@click.option("--task-id", "task_ids", multiple=True, help="A task id to retry (repeatable).")
@click.option("--status", "task_status", help="Tasks with this status (default: failed).")
@click.option("--service", help="Tasks of this service only.")
@json_option
def retry_tasks(
    config: str,
    workflow: str,
    ids: tuple[str, ...],
    ids_file: Any,
    tag: str | None,
    task_ids: tuple[str, ...],
    task_status: str | None,
    service: str | None,
    as_json: bool,
) -> None:
    """Dispatch again tasks of instances: by id, status (default: failed) or service."""

    async def act(client: InfiniticClient, stub: object) -> None:
        await client.retry_tasks(
            stub, task_ids=list(task_ids) or None, status=task_status, service=service
        )

    _run_on_targets(config, workflow, ids, ids_file, tag, as_json, "retry-tasks", act)


@workflow_group.command("complete-timers")
@config_option(help_text=_CONFIG_HELP)
@click.argument("workflow")
@_targets
@click.option("--method-run-id", help="Only the timers of this method run.")
@json_option
def complete_timers(
    config: str,
    workflow: str,
    ids: tuple[str, ...],
    ids_file: Any,
    tag: str | None,
    method_run_id: str | None,
    as_json: bool,
) -> None:
    """Complete now the ongoing timers of instances."""

    async def act(client: InfiniticClient, stub: object) -> None:
        await client.complete_timers(stub, method_run_id=method_run_id)

    _run_on_targets(config, workflow, ids, ids_file, tag, as_json, "complete-timers", act)


@workflow_group.command("ids")
@config_option(help_text=_CONFIG_HELP)
@click.argument("workflow")
@click.option("--tag", required=True, help="The tag whose instances are listed.")
@json_option
def ids_command(config: str, workflow: str, tag: str, as_json: bool) -> None:
    """List the ids of the instances with a tag (one a line)."""

    async def work() -> int:
        async with open_session(config) as session:
            cls = session.workflow(workflow, need_class=False)
            found = await session.client.get_ids(session.client.get_workflow_by_tag(cls, tag))
            if as_json:
                click.echo(to_json(found))
            elif found:
                click.echo("\n".join(found))
            return EXIT_OK

    run_command(work())


@task_group.command("complete-delegated")
@config_option(help_text=_CONFIG_HELP)
@click.argument("service")
@click.argument("task_id")
@click.argument("value")
@json_option
def complete_delegated(config: str, service: str, task_id: str, value: str, as_json: bool) -> None:
    """Complete the delegated task TASK_ID of SERVICE with VALUE (a JSON value, or text)."""
    parsed = parse_value(value)

    async def work() -> int:
        async with open_session(config) as session:
            await session.client.complete_delegated_task(service, task_id, parsed)
            if as_json:
                click.echo(to_json({"service": service, "taskId": task_id, "completed": True}))
            else:
                click.echo(f"completed task {task_id} of {service}")
            return EXIT_OK

    run_command(work())
