"""The ``infinitic`` command line.

infinitic worker --config infinitic.yml            # run a worker until SIGINT/SIGTERM
infinitic worker --config infinitic.yml --check    # validate the file and its classes
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from infinitic.exceptions import ConfigurationError


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="infinitic", description="Infinitic for Python: durable workflows."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    worker = commands.add_parser(
        "worker",
        help="run a worker described by a YAML file",
        description="Run the services and workflows of a YAML configuration until SIGINT or "
        "SIGTERM. INFINITIC__<PATH> environment variables override keys of the file.",
    )
    worker.add_argument("--config", "-c", required=True, help="the YAML configuration file")
    worker.add_argument("--check", action="store_true", help="validate the configuration and exit")
    worker.add_argument(
        "--log-level",
        default="INFO",
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="logging level (default INFO)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (2 for a configuration error)."""
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=getattr(logging, args.log_level),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    from infinitic.worker._config import load_config
    from infinitic.worker._worker import InfiniticWorker

    try:
        config = load_config(args.config)
        worker = InfiniticWorker.from_config(config)  # imports the classes, connects nothing
        if args.check:
            print(
                f"{args.config}: valid ({len(config.services)} services, "
                f"{len(config.workflows)} workflows)"
            )
            return 0
    except ConfigurationError as e:
        print(f"infinitic: {e}", file=sys.stderr)
        return 2
    worker.run()
    return 0


def cli() -> None:
    """Entry point of the ``infinitic`` script."""
    sys.exit(main())


if __name__ == "__main__":  # python -m infinitic.worker._cli
    cli()
