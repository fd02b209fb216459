"""The ``infinitic`` command line: ``cli`` is the click group (``infinitic --help``), ``main``
runs it with arguments and returns the exit code (0 done, 1 failed, 2 usage or configuration
error), ``run`` is the script's entry point, ``config_option`` is the ``-c/--config`` option of
its commands (for commands of other packages). ``python -m infinitic.worker.cli`` is the same as
``infinitic``."""

import os
import sys

from infinitic.worker._cli import cli, installed_versions, main
from infinitic.worker._cli_common import config_option


def run() -> None:
    """Run the command and end the process with its exit code.

    The process ends with ``os._exit`` once standard output and error are flushed and every
    connection is closed: the Pulsar client library's threads may otherwise abort the process
    while the interpreter is torn down ("terminate called without an active exception").
    """
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


__all__ = ["cli", "config_option", "installed_versions", "main", "run"]

if __name__ == "__main__":
    run()
