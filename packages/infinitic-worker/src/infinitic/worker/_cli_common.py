"""What the commands of the ``infinitic`` command line share: options, exit codes, output."""

from __future__ import annotations

import asyncio
import base64
import json
import sys
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import click

from infinitic.exceptions import ConfigurationError

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_CONFIG = 2

F = TypeVar("F", bound=Callable[..., Any])


def config_option(*, help_text: str) -> Callable[[F], F]:
    """``-c/--config PATH`` (``INFINITIC_CONFIG`` when not given)."""
    return click.option(
        "-c",
        "--config",
        required=True,
        envvar="INFINITIC_CONFIG",
        show_envvar=True,
        type=click.Path(dir_okay=False),
        help=help_text,
    )


json_option = click.option(
    "--json", "as_json", is_flag=True, help="Print the outcome as JSON on standard output."
)


def parse_value(text: str) -> Any:
    """A command-line value: JSON when it parses (``10``, ``"a b"``, ``{"k": 1}``), else the
    text itself."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def to_json(value: Any) -> str:
    """JSON text of any decoded value (bytes as base64, other objects as their text)."""

    def default(o: Any) -> Any:
        if isinstance(o, bytes | bytearray):
            return base64.b64encode(bytes(o)).decode("ascii")
        if hasattr(o, "model_dump"):
            return o.model_dump(mode="json")
        if isinstance(o, set | frozenset | tuple):
            return list(o)
        return str(o)

    return json.dumps(value, default=default)


def run_command(work: Coroutine[Any, Any, int]) -> None:
    """Run a command's coroutine and exit with its code: 2 on a ConfigurationError (the
    message on standard error), 1 on any other error."""
    try:
        code = asyncio.run(work)
    except ConfigurationError as e:
        click.echo(f"infinitic: {e}", err=True)
        sys.exit(EXIT_CONFIG)
    except click.exceptions.Exit:
        raise
    except KeyboardInterrupt:
        click.echo("infinitic: interrupted", err=True)
        sys.exit(130)
    except Exception as e:
        click.echo(f"infinitic: {type(e).__name__}: {e}", err=True)
        sys.exit(EXIT_FAILED)
    sys.exit(code)
