"""The Pulsar C++ client's own log lines, into Python logging without costing the GIL.

Given a Python logger, the client's wrapper says every level is enabled: each line the C++ code
could log, DEBUG included (a few per message received, sent or acknowledged), takes the GIL on
the client's I/O thread and calls Python, which drops it. Under load that was a tenth of a
worker's time, and the I/O thread waited for the GIL (up to the 5 ms switch interval) before
handing on each message.

So the client gets a file logger instead, at the level of the ``infinitic.transport_pulsar.client``
logger when the client is created: the C++ code skips the disabled levels itself and writes the
others to a pipe, and a daemon thread of this process reads the pipe and logs each line through
that logger (level, source place and thread of the C++ line kept in the message). Where a pipe
cannot be opened by name (no ``/dev/fd``), the client gets the Python logger as before.
"""

from __future__ import annotations

import logging
import os
import re
import threading
from typing import Any

import pulsar

#: The C++ client's levels, from the lowest.
_CPP_LEVELS = (
    (logging.DEBUG, pulsar.LoggerLevel.Debug),
    (logging.INFO, pulsar.LoggerLevel.Info),
    (logging.WARNING, pulsar.LoggerLevel.Warn),
)
_PY_LEVELS = {"DEBUG": logging.DEBUG, "INFO": logging.INFO, "WARN": logging.WARNING}
# "2026-11-29 21:00:00.123 WARN  [140123] ClientConnection.cc:123 | the message"
_LINE = re.compile(r"^\S+ \S+ (DEBUG|INFO|WARN|ERROR)\s+\[([^\]]*)\] (\S+) \| (.*)$")


def cpp_level(python_level: int) -> Any:
    """The C++ client's level that enables what ``python_level`` lets through."""
    for level, cpp in _CPP_LEVELS:
        if python_level <= level:
            return cpp
    return pulsar.LoggerLevel.Error


# A line the client writes at WARN for a producer or consumer it created fine: it arms the
# creation's timeout after asking for the connection, so a connection made at once (the usual
# case on a local broker) cancels the timer before it is armed, and it fires one operation
# timeout later on a handler that is ready (and ignores it). A creation that really timed out
# fails the transport's subscribe or publish, which says so itself.
_FALSE_WARNINGS = ("Cancel the pending reconnection due to the start timeout",)


def parse_line(line: str) -> tuple[int, str]:
    """The Python level and the message of one line of the C++ client (a line it did not
    format, e.g. the rest of a multi-line message, is a WARNING as it is)."""
    match = _LINE.match(line)
    if match is None:
        return logging.WARNING, line
    level, thread, place, message = match.groups()
    python_level = _PY_LEVELS.get(level, logging.ERROR)
    if python_level == logging.WARNING and message.startswith(_FALSE_WARNINGS):
        python_level = logging.INFO
    return python_level, f"{message} ({place}, thread {thread})"


class _Forwarder:
    """The pipe of this process and the thread reading it (both made at the first client)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pid = 0
        self._path: str | None = None

    def path(self, logger: logging.Logger) -> str | None:
        """The name the C++ client opens to write its lines; None without ``/dev/fd``."""
        with self._lock:
            if self._pid != os.getpid():  # first use, or a forked child: a pipe of its own
                self._pid = os.getpid()
                self._path = self._open(logger)
            return self._path

    @staticmethod
    def _open(logger: logging.Logger) -> str | None:
        if not os.path.isdir("/dev/fd"):
            return None
        read_fd, write_fd = os.pipe()
        os.set_inheritable(write_fd, False)
        thread = threading.Thread(
            target=_forward, args=(read_fd, logger), name="infinitic-pulsar-log", daemon=True
        )
        thread.start()
        # write_fd stays open for the process's life: the client opens the pipe again by name,
        # and the reader never sees an end of file while a later client may still come.
        return f"/dev/fd/{write_fd}"


def _forward(read_fd: int, logger: logging.Logger) -> None:
    with open(read_fd, encoding="utf-8", errors="replace", closefd=True) as lines:
        for line in lines:
            line = line.rstrip("\n")
            if not line:
                continue
            level, message = parse_line(line)
            try:
                logger.log(level, "%s", message)
            except Exception:  # a handler failing must not stop the reader: the pipe would fill
                pass


_forwarder = _Forwarder()


def client_logger_option(logger: logging.Logger) -> Any:
    """The ``logger`` argument of ``pulsar.Client``: a file logger writing into this process's
    pipe at ``logger``'s effective level, or ``logger`` itself without ``/dev/fd``."""
    path = _forwarder.path(logger)
    if path is None:
        return logger
    return pulsar.FileLogger(cpp_level(logger.getEffectiveLevel()), path)
