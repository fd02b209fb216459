"""The strict check of workflow code: calls that give another result at a replay.

While a workflow task's code runs under the check (``CheckMode.STRICT``, and the test kit), a
profile function of the running thread (``sys.setprofile``: this thread only, removed when the
code returns) looks at each call made *by user code* (see :mod:`._code_places`), and an audit
hook (``sys.addaudithook``, installed once; it does nothing in threads not under the check)
looks at I/O: a clock, a random value, a UUID, a sleep, a file, a socket or a process started
raises :class:`~infinitic.exceptions.NonDeterministicCallError` at the call, naming it, the
workflow, the method and the line, and what to use instead. The same calls made by Infinitic,
by logging (a log record's clock) or by importlib (a module imported late) are not reported;
nor are those made inside ``inline()``, which is where such values are meant to be made.

It costs a function call per call of workflow code, so production workers run it only when
asked (``check_mode="strict"``).
"""

from __future__ import annotations

import datetime
import os
import random
import sys
import threading
import time
import uuid
from types import CodeType, FrameType
from typing import Any

from infinitic.exceptions import NonDeterministicCallError
from infinitic.workflow_engine._code_places import describe_place, is_user_file, user_caller

_NOW = "use self.now() (the instant of the workflow task, the same at every replay)"
_SLEEP = "use await asyncio.sleep(...) or await timer(...) (a durable timer)"
_RANDOM = (
    "use self.random() or self.uuid4() (the same at every replay), or record a value with "
    "inline(lambda: ...)"
)
_UUID = "use self.uuid4() (the same at every replay)"
_IO = "do I/O in a service task, or record its result with inline(lambda: ...)"

#: C functions (compared by identity) and what to use instead.
_C_FUNCTIONS: dict[Any, tuple[str, str]] = {
    time.time: ("time.time()", _NOW),
    time.time_ns: ("time.time_ns()", _NOW),
    time.monotonic: ("time.monotonic()", _NOW),
    time.monotonic_ns: ("time.monotonic_ns()", _NOW),
    time.perf_counter: ("time.perf_counter()", _NOW),
    time.perf_counter_ns: ("time.perf_counter_ns()", _NOW),
    time.sleep: ("time.sleep()", _SLEEP),
    os.urandom: ("os.urandom()", _RANDOM),
}
#: Methods of these objects (C or Python), by object, and what to use instead.
_BOUND_TO: dict[int, tuple[str, str]] = {
    id(datetime.datetime): ("datetime", _NOW),
    id(datetime.date): ("date", _NOW),
    id(random._inst): ("random", _RANDOM),
}
_RANDOM_FILE = random.__file__
_RANDOM_INST = random._inst
_CLOCK_METHODS = frozenset({"now", "utcnow", "today"})
#: Python functions (by code object) and what to use instead.
_PY_FUNCTIONS: dict[CodeType, tuple[str, str]] = {
    uuid.uuid1.__code__: ("uuid.uuid1()", _UUID),
    uuid.uuid4.__code__: ("uuid.uuid4()", _UUID),
}
#: Audit events of I/O.
_AUDIT_EVENTS: dict[str, str] = {
    "open": "open()",
    "socket.connect": "a socket connection",
    "socket.getaddrinfo": "a name lookup (socket.getaddrinfo)",
    "subprocess.Popen": "a process (subprocess.Popen)",
    "os.system": "os.system()",
    "os.exec": "os.exec*()",
    "os.spawn": "os.spawn*()",
}
_SKIP_MODULES = ("logging", "warnings", "linecache", "traceback", "asyncio")


class _Checked(threading.local):
    checker: StrictCheck | None = None


_current = _Checked()
_audit_installed = False
_audit_lock = threading.Lock()


class StrictCheck:
    """The check of one workflow task's code, in the thread that runs it.

    Attributes:
        violation: the first call reported (also raised at the call; kept in case workflow
            code caught it).
    """

    def __init__(self, workflow_name: str) -> None:
        self.workflow_name = workflow_name
        self.violation: NonDeterministicCallError | None = None
        self.suspended = 0  # inside inline()
        self._previous: Any = None

    def __enter__(self) -> StrictCheck:
        _install_audit_hook()
        self._previous = sys.getprofile()
        _current.checker = self
        sys.setprofile(self._profile)
        return self

    def __exit__(self, *exc: object) -> None:
        sys.setprofile(self._previous)
        _current.checker = None

    def _report(self, call: str, use: str, frame: FrameType) -> None:
        method, where = describe_place(frame)
        error = NonDeterministicCallError(call, self.workflow_name, method or "?", where, use)
        if self.violation is None:
            self.violation = error
        raise error

    def _profile(self, frame: FrameType, event: str, arg: Any) -> None:
        # Called at every call of the thread: the cheap tests come first.
        if event == "c_call":
            try:
                found = _C_FUNCTIONS.get(arg)
            except TypeError:  # an unhashable callable
                found = None
            if found is None:
                owner = getattr(arg, "__self__", None)
                bound = _BOUND_TO.get(id(owner)) if owner is not None else None
                if bound is None or (bound[0] != "random" and arg.__name__ not in _CLOCK_METHODS):
                    return
                found = (f"{bound[0]}.{arg.__name__}()", bound[1])
            caller: FrameType | None = frame
        elif event == "call":
            code = frame.f_code
            found = _PY_FUNCTIONS.get(code)
            if found is None:
                if (
                    code.co_filename != _RANDOM_FILE
                    or frame.f_locals.get("self") is not _RANDOM_INST
                ):
                    return
                found = (f"random.{code.co_name}()", _RANDOM)
            caller = frame.f_back
        else:
            return
        if caller is not None and not self.suspended and is_user_file(caller.f_code.co_filename):
            self._report(found[0], found[1], caller)


def suspended() -> _Suspended:
    """A context in which the running check (if any) reports nothing (``inline()``)."""
    return _Suspended(_current.checker)


class _Suspended:
    def __init__(self, checker: StrictCheck | None) -> None:
        self._checker = checker

    def __enter__(self) -> None:
        if self._checker is not None:
            self._checker.suspended += 1

    def __exit__(self, *exc: object) -> None:
        if self._checker is not None:
            self._checker.suspended -= 1


def _audit(event: str, args: tuple[Any, ...]) -> None:
    checker = _current.checker
    if checker is None or checker.suspended:
        return
    call = _AUDIT_EVENTS.get(event)
    if call is None:
        return
    frame = user_caller(sys._getframe(1), _SKIP_MODULES)
    if frame is not None:
        checker.suspended += 1  # describing the place reads files (linecache): not reported
        try:
            checker._report(call, _IO, frame)
        finally:
            checker.suspended -= 1


def _install_audit_hook() -> None:
    global _audit_installed
    with _audit_lock:
        if not _audit_installed:
            sys.addaudithook(_audit)
            _audit_installed = True
