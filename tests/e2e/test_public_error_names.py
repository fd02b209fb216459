"""Errors name the classes users import: a failure raised from an exception class of Infinitic
shows ``infinitic.exceptions.ValueTooLargeError``, never the private module it is defined in
(``infinitic.common._errors``), and so does any public exception class of a package defined in
one of its private modules (``infinitic.task_executor.TaskTimeoutError``)."""

from __future__ import annotations

import asyncio
import importlib
import pkgutil
import sys
import traceback
import types
from typing import Protocol

import pytest

import infinitic
from infinitic.common import failure_from_exception
from infinitic.exceptions import (
    DeferredError,
    MessageDeadLetteredError,
    RemoteError,
    TaskFailedError,
    ValueTooLargeError,
    WorkflowChangedError,
    WorkflowFailedError,
)
from infinitic.services import timeout
from infinitic.workflows import Workflow, new_service

from .conftest import WorkerFactory, running


class Vault(Protocol):
    async def keep(self, size: int) -> str: ...

    async def crawl(self, seconds: float) -> str: ...


class VaultImpl:
    async def keep(self, size: int) -> str:
        # what a service storing through infinitic.storage gets past its backend's limit
        raise ValueTooLargeError("Redis", "vault:1", size, 512)

    @timeout(seconds=0.05)
    async def crawl(self, seconds: float) -> str:
        await asyncio.sleep(seconds)
        return "arrived"


class Keeper(Workflow):
    vault = new_service(Vault)

    async def keep(self, size: int) -> str:
        return await self.vault.keep(size)

    async def crawl(self, seconds: float) -> str:
        return await self.vault.crawl(seconds)


async def _task_error(call: object) -> RemoteError:
    with pytest.raises(WorkflowFailedError) as raised:
        await call  # type: ignore[misc]
    task = raised.value.cause
    assert isinstance(task, TaskFailedError)
    assert isinstance(task.cause, RemoteError)
    return task.cause


async def test_task_failures_name_the_public_class(make_worker: WorkerFactory) -> None:
    worker = make_worker()
    worker.add_service(VaultImpl(), interface=Vault, name="Vault")
    worker.add_workflow(Keeper)
    async with running(worker) as client:
        too_large = await _task_error(client.new_workflow(Keeper).keep(1000))
        timed_out = await _task_error(client.new_workflow(Keeper).crawl(5.0))
    assert too_large.class_name == "infinitic.exceptions.ValueTooLargeError"
    assert str(too_large).startswith("infinitic.exceptions.ValueTooLargeError: Redis cannot")
    assert "infinitic.exceptions.ValueTooLargeError: Redis cannot" in too_large.stack
    assert timed_out.class_name == "infinitic.task_executor.TaskTimeoutError"
    for error in (too_large, timed_out):
        assert "._" not in str(error)


def _exported_exceptions() -> list[tuple[str, type[BaseException]]]:
    found = []
    for info in pkgutil.iter_modules(infinitic.__path__):
        if info.name.startswith("_"):
            continue
        try:
            package = importlib.import_module(f"infinitic.{info.name}")
        except ImportError:  # an optional package not installed here
            continue
        for name in getattr(package, "__all__", []):
            value = getattr(package, name)
            if isinstance(value, type) and issubclass(value, BaseException):
                found.append((f"infinitic.{info.name}.{name}", value))
    return found


# rebuilt from their fields (service, workflow, id...): they carry no class name
_REBUILT = (DeferredError, RemoteError, WorkflowChangedError, MessageDeadLetteredError)


def _class_name(cls: type[BaseException]) -> str:
    """What FailureInfo.class_name says of an exception of ``cls`` raised in a task."""
    error = cls.__new__(cls)
    error.args = ("x",)
    return failure_from_exception(error).class_name


def test_every_exported_exception_is_named_where_it_is_imported_from() -> None:
    exported = [(w, c) for w, c in _exported_exceptions() if not issubclass(c, _REBUILT)]
    assert len(exported) > 15  # infinitic.exceptions and the packages' own
    for where, cls in exported:
        name = _class_name(cls)
        assert "._" not in name, (where, name)
        module, _, qualname = name.rpartition(".")
        assert getattr(importlib.import_module(module), qualname) is cls, (where, name)


def test_a_user_class_of_a_private_module_is_named_where_its_package_exports_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    package, private = types.ModuleType("billing"), types.ModuleType("billing._rules")
    exported = type("Refused", (Exception,), {"__module__": "billing._rules"})
    internal = type("Internal", (Exception,), {"__module__": "billing._rules"})
    package.Refused = exported  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "billing", package)
    monkeypatch.setitem(sys.modules, "billing._rules", private)
    assert _class_name(exported) == "billing.Refused"
    assert _class_name(internal) == "billing._rules.Internal"  # exported nowhere: as is
    assert _class_name(KeyError) == "KeyError"


def test_tracebacks_show_infinitic_exceptions() -> None:
    error = ValueTooLargeError("MySQL", "k", 10, 5)
    line = traceback.format_exception_only(error)[-1]
    assert line.startswith("infinitic.exceptions.ValueTooLargeError: MySQL cannot store key")
    assert repr(ValueTooLargeError) == "<class 'infinitic.exceptions.ValueTooLargeError'>"
