"""What a worker runs of each service and workflow: its roles, as Infinitic separates them.

A service has an executor (runs its tasks) and a tag engine (task tags, delegated tasks); a
workflow has an executor (runs its code), a state engine (stores its state, starts its
commands; with the timers and events handlers that feed it) and a tag engine (tags, custom ids).
Any subset may run in one worker; the others run elsewhere on the same transport and storage.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from infinitic.common import RetryPolicy
from infinitic.exceptions import ConfigurationError
from infinitic.storage import Storage


@dataclass
class ServiceRoles:
    """A service registered on a worker: what runs, with what."""

    name: str
    implementation: object | None  # None: the tag engine only
    interface: type | None
    concurrency: int
    retry: RetryPolicy | None
    timeout: float | None
    tag_engine_concurrency: int
    executor: bool
    tag_engine: bool
    tag_engine_storage: Storage | None = None

    def describe(self) -> str:
        return _describe(self.name, executor=self.executor, tag_engine=self.tag_engine)


@dataclass
class WorkflowRoles:
    """A workflow registered on a worker: its versions (none: engines only) and what runs."""

    name: str
    classes: list[type] = field(default_factory=list)
    concurrency: int = 1
    state_engine_concurrency: int = 1
    tag_engine_concurrency: int = 1
    executor: bool = True
    state_engine: bool = True
    tag_engine: bool = True
    state_engine_storage: Storage | None = None
    tag_engine_storage: Storage | None = None

    def describe(self) -> str:
        return _describe(
            self.name,
            executor=self.executor,
            state_engine=self.state_engine,
            tag_engine=self.tag_engine,
        )

    def merge(self, other: WorkflowRoles) -> None:
        """Add another version of the workflow: its classes, the larger concurrencies, every
        role either registration runs, the storages given first."""
        self.classes.extend(other.classes)
        self.concurrency = max(self.concurrency, other.concurrency)
        self.state_engine_concurrency = max(
            self.state_engine_concurrency, other.state_engine_concurrency
        )
        self.tag_engine_concurrency = max(self.tag_engine_concurrency, other.tag_engine_concurrency)
        self.executor |= other.executor
        self.state_engine |= other.state_engine
        self.tag_engine |= other.tag_engine
        self.state_engine_storage = self.state_engine_storage or other.state_engine_storage
        self.tag_engine_storage = self.tag_engine_storage or other.tag_engine_storage


def _describe(name: str, **roles: bool) -> str:
    """``BankWorkflow`` when everything runs, else ``BankWorkflow (state engine, tag engine)``."""
    running = [role.replace("_", " ") for role, on in roles.items() if on]
    return name if len(running) == len(roles) else f"{name} ({', '.join(running)})"


def executor_role(executor: bool | None, has_code: bool, entity: str, name: str) -> bool:
    """Whether an entity's executor runs: by default when its code is given.

    Raises:
        ConfigurationError: the executor is asked for without the code it runs.
    """
    if executor is None:
        return has_code
    if executor and not has_code:
        what = "an implementation" if entity == "service" else "its class"
        raise ConfigurationError(
            f"{entity} {name}: running its executor needs {what}; give it, or run its engines "
            "only (executor=False)"
        )
    return bool(executor)


def check_some_role(entity: str, name: str, **roles: bool) -> None:
    """Refuse a registration that runs nothing."""
    if not any(roles.values()):
        names = ", ".join(r.replace("_", " ") for r in roles)
        raise ConfigurationError(
            f"{entity} {name} runs nothing on this worker: enable one of {names}"
        )


def check_concurrency(**values: int | None) -> None:
    """Refuse a concurrency that is not an integer >= 1 (None: the default)."""
    for name, value in values.items():
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, int) or value < 1
        ):
            raise ConfigurationError(f"{name} must be an integer >= 1, got {value!r}")


def check_seconds(**values: float | None) -> None:
    """Refuse a duration that is not a number of seconds > 0 (None: the default)."""
    for name, value in values.items():
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, int | float) or value <= 0
        ):
            raise ConfigurationError(f"{name} must be a number of seconds > 0, got {value!r}")
