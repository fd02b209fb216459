"""The ``infinitic`` command line (click).

infinitic worker -c infinitic.yml [--check]       # run a worker until SIGINT/SIGTERM
infinitic workflow start|status|cancel|... -c client.yml WORKFLOW ...
infinitic task complete-delegated -c client.yml SERVICE TASK_ID VALUE
infinitic config show -c infinitic.yml            # the merged configuration, secrets hidden
infinitic --version                               # each installed infinitic distribution

Exit codes: 0 done, 1 failed (an operation, a connection, a workflow awaited with ``--wait``),
2 a usage or configuration error (nothing was done).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from importlib.metadata import distributions
from typing import Any

import click
import yaml

from infinitic.exceptions import ConfigurationError, InfiniticError
from infinitic.worker._cli_common import (
    EXIT_CONFIG,
    EXIT_FAILED,
    config_option,
    json_option,
    run_command,
)
from infinitic.worker._cli_workflow import task_group, workflow_group
from infinitic.worker._log_context import configure_logging
from infinitic.worker._secrets import hide_secrets


def installed_versions() -> dict[str, str]:
    """The version of each installed ``infinitic-*`` distribution, by name."""
    found: dict[str, str] = {}
    for dist in distributions():
        name = (dist.metadata["Name"] or "").lower().replace("_", "-")
        if name == "infinitic" or name.startswith("infinitic-"):
            found[name] = dist.version
    return dict(sorted(found.items()))


def _print_version(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    if not value or ctx.resilient_parsing:
        return
    for name, version in installed_versions().items():
        click.echo(f"{name} {version}")
    ctx.exit(0)


@click.group(
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.option(
    "--version",
    is_flag=True,
    expose_value=False,
    is_eager=True,
    callback=_print_version,
    help="Show the version of each installed infinitic package and exit.",
)
def cli() -> None:
    """Infinitic for Python: durable workflows.

    Exit codes: 0 done, 1 failed, 2 usage or configuration error.
    """


@cli.command()
@config_option(help_text="the worker's YAML configuration file")
@click.option(
    "--check", is_flag=True, help="Validate the configuration and its classes, then exit."
)
@click.option(
    "--log-level",
    default="INFO",
    show_default=True,
    type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False),
    help="Logging level.",
)
@click.option(
    "--log-format",
    default="text",
    show_default=True,
    type=click.Choice(["text", "json"], case_sensitive=False),
    help="text lines, or one JSON object per line; both carry the ids of the message being "
    "handled.",
)
def worker(config: str, check: bool, log_level: str, log_format: str) -> None:
    """Run the services and workflows of a YAML configuration until SIGINT or SIGTERM.

    INFINITIC__<PATH> environment variables override keys of the file
    (INFINITIC__STORAGE__REDIS__HOST=db).
    """
    configure_logging(log_level, json_output=log_format.lower() == "json")
    from infinitic.worker._config import load_config
    from infinitic.worker._gc import tune_for_worker
    from infinitic.worker._worker import InfiniticWorker

    try:
        loaded = load_config(config)
    except ConfigurationError as e:
        click.echo(f"infinitic: {e}", err=True)
        sys.exit(EXIT_CONFIG)
    try:
        built = InfiniticWorker.from_config(loaded)  # imports the classes, connects nothing
        if not loaded.services and not loaded.workflows and not built.events.listened([], []):
            raise ConfigurationError(
                "nothing to run: list services: or workflows: with a class, or give "
                "eventListener: allow lists naming the services or workflows to listen to"
            )
    except ConfigurationError as e:
        click.echo(f"infinitic: {config}: {e}", err=True)
        sys.exit(EXIT_CONFIG)
    if check:
        click.echo(
            f"{config}: valid ({len(loaded.services)} services, {len(loaded.workflows)} "
            "workflows); the storage and the broker are tried when the worker starts"
        )
        return
    tune_for_worker()  # after the classes are imported: they are never garbage
    try:
        built.run()
    except ConfigurationError as e:
        click.echo(f"infinitic: {config}: {e}", err=True)
        sys.exit(EXIT_CONFIG)
    except InfiniticError as e:  # an unreachable storage or broker
        click.echo(f"infinitic: worker not started: {e}", err=True)
        sys.exit(EXIT_FAILED)


@cli.group()
def config() -> None:
    """Inspect a configuration."""


@config.command("show")
@config_option(help_text="a worker's or client's YAML configuration file")
@json_option
def config_show(config: str, as_json: bool) -> None:
    """Print the configuration as a worker reads it: the file, INFINITIC__... environment
    variables applied, defaults filled in, passwords and tokens hidden."""

    async def show() -> int:
        from infinitic.worker._config import load_config

        data: dict[str, Any] = load_config(config).model_dump(
            mode="json", by_alias=True, exclude_none=True
        )
        shown = hide_secrets(data)
        if as_json:
            click.echo(json.dumps(shown, indent=2))
        else:
            click.echo(yaml.safe_dump(shown, sort_keys=False).rstrip())
        return 0

    run_command(show())


@click.command(
    name="dashboard",
    context_settings={"ignore_unknown_options": True, "allow_extra_args": True},
    add_help_option=False,
)
@click.pass_context
def dashboard_command(ctx: click.Context) -> None:
    """Serve a web dashboard of the workflows (package infinitic-dashboard; see its --help)."""
    import importlib  # the dashboard is a distribution of its own, which imports this one

    try:
        command = importlib.import_module("infinitic.dashboard.cli").dashboard
    except ImportError:
        raise click.UsageError(
            "the dashboard is a package of its own: pip install infinitic-dashboard"
        ) from None
    command.main(args=ctx.args, prog_name=ctx.command_path)


cli.add_command(workflow_group)
cli.add_command(task_group)
cli.add_command(dashboard_command)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line with ``argv`` (default: ``sys.argv[1:]``); return the exit code."""
    try:
        cli.main(args=list(argv) if argv is not None else None, prog_name="infinitic")
    except SystemExit as e:
        return e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    return 0
