"""Where workflow code is: telling user code from library code in a thread's frames.

User code is any file outside the standard library, the installed packages (site-packages) and
Infinitic's own packages: workflow classes and the helpers they call.
"""

from __future__ import annotations

import os
import sysconfig
from types import CodeType, FrameType

import infinitic


def _library_roots() -> tuple[str, ...]:
    paths = sysconfig.get_paths()
    keys = ("stdlib", "platstdlib", "purelib", "platlib", "scripts")
    roots = {paths[k] for k in keys if k in paths}
    roots.update(infinitic.__path__)  # every Infinitic package, wherever it is installed
    return tuple(os.path.join(os.path.realpath(r), "") for r in roots)


_LIBRARY_ROOTS = _library_roots()
_user_files: dict[str, bool] = {}


def is_user_file(filename: str) -> bool:
    """True for a file of user code (not the standard library, an installed package or
    Infinitic)."""
    known = _user_files.get(filename)
    if known is None:
        if filename.startswith("<"):  # <frozen importlib...>, <string>
            known = False
        else:
            known = not os.path.realpath(filename).startswith(_LIBRARY_ROOTS)
        _user_files[filename] = known
    return known


def _method_code() -> CodeType:
    from infinitic.workflow_engine._runtime import WorkflowInstance

    return WorkflowInstance._run_method.__code__


def describe_place(frame: FrameType) -> tuple[str | None, str]:
    """The workflow method a thread runs and the place of the innermost user code in it
    (``file:line in function``), from the thread's innermost frame."""
    run_method = _method_code()
    place: FrameType | None = None
    method: str | None = None
    inner: FrameType | None = None
    current: FrameType | None = frame
    while current is not None:
        if current.f_code is run_method:
            if inner is not None:
                method = inner.f_code.co_name  # the coroutine _run_method awaits
            break
        if place is None and is_user_file(current.f_code.co_filename):
            place = current
        inner = current
        current = current.f_back
    shown = place or frame
    where = f"{shown.f_code.co_filename}:{shown.f_lineno} in {shown.f_code.co_name}"
    return method, where


def user_caller(frame: FrameType | None, skip_modules: tuple[str, ...] = ()) -> FrameType | None:
    """The innermost user frame from ``frame`` outwards, or None when a frame of Infinitic, of
    importlib or of a module named in ``skip_modules`` comes first (the call is theirs, e.g. a
    log record's clock or an import's file read)."""
    current = frame
    while current is not None:
        filename = current.f_code.co_filename
        if is_user_file(filename):
            return current
        name = current.f_globals.get("__name__", "")
        if (
            filename.startswith("<frozen")
            or name.startswith("infinitic.")
            or name.split(".", 1)[0] in skip_modules
        ):
            return None
        current = current.f_back
    return None
