"""A command's connection: a client built from a configuration file, the workers' storage when
the command reads states, and the workflow classes the command names.

An in-memory transport reaches only the workers of its own process, so a configuration whose
transport is ``inMemory`` runs its services and workflows inside the command while it lasts
(handy for trying the commands and for tests); any other transport only connects.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any

from infinitic.client import InfiniticClient, load_yaml
from infinitic.common import read_workflow_state
from infinitic.exceptions import ConfigurationError
from infinitic.services import name as wire_name
from infinitic.storage import Storage
from infinitic.transport import apply_env_overrides, normalize_key
from infinitic.workflows import Workflow

logger = logging.getLogger("infinitic.cli")


def section(data: Mapping[str, Any], key: str) -> Any:
    """The value of ``key`` in ``data``, whatever the case and underscores of its spelling."""
    return next((v for k, v in data.items() if normalize_key(str(k)) == normalize_key(key)), None)


def is_in_memory(data: Mapping[str, Any]) -> bool:
    """True when the configuration names the in-memory transport."""
    transport = section(data, "transport")
    return isinstance(transport, Mapping) and any(
        normalize_key(str(k)) == "inmemory" for k in transport
    )


class CliSession:
    """What a command works with (see :func:`open_session`)."""

    def __init__(
        self,
        client: InfiniticClient,
        data: Mapping[str, Any],
        storage: Storage | None,
        path: str,
    ) -> None:
        self.client = client
        self._data = data
        self._storage = storage
        self._owned_storage: Storage | None = None
        self._path = path

    def workflow(self, given: str, *, need_class: bool) -> type:
        """The workflow class named on the command line: a ``name`` (or class) of the
        configuration's ``workflows:``, a dotted path ``package.module.Class``, or (when the
        command needs no method signature) just its name.

        Raises:
            ConfigurationError: the class cannot be found or imported.
        """
        from infinitic.worker._build import import_object

        items = section(self._data, "workflows") or []
        for i, item in enumerate(items if isinstance(items, list) else []):
            if not isinstance(item, Mapping):
                continue
            executor = section(item, "executor")
            cls_path = section(item, "class") or (
                section(executor, "class") if isinstance(executor, Mapping) else None
            )
            if isinstance(cls_path, str) and given in (
                section(item, "name"),
                cls_path,
                cls_path.rpartition(".")[2],
            ):
                found = import_object(cls_path, f"{self._path}: workflows.{i}.class")
                return self._checked(found, cls_path)
        if "." in given:
            return self._checked(import_object(given, "WORKFLOW"), given)
        if need_class:
            raise ConfigurationError(
                f"workflow {given!r}: its class is needed to encode the arguments; name it by "
                f"its dotted path (package.module.{given}) or list it under workflows: in "
                f"{self._path}"
            )
        stand_in: type = type(given, (Workflow,), {"__module__": __name__})
        return wire_name(given)(stand_in)

    @staticmethod
    def _checked(found: Any, where: str) -> type:
        if not (isinstance(found, type) and issubclass(found, Workflow)):
            raise ConfigurationError(f"{where} is not a Workflow subclass (got {found!r})")
        return found

    def _state_storage(self) -> Storage:
        if self._storage is not None:
            return self._storage
        config = section(self._data, "storage")
        if not isinstance(config, Mapping) or not config:
            raise ConfigurationError(
                f"{self._path}: reading workflow states needs the workers' storage: add their "
                "storage: section to this configuration"
            )
        from infinitic.worker._build import build_storage
        from infinitic.worker._config import StorageConfig

        try:
            storage_config = StorageConfig.model_validate(config)
        except ValueError as e:
            raise ConfigurationError(f"{self._path}: storage: {e}") from e
        self._storage = self._owned_storage = build_storage(storage_config)
        return self._storage

    async def state(self, workflow_name: str, workflow_id: str) -> dict[str, Any] | None:
        """The stored state of an instance (None: none, i.e. never started or finished)."""
        return await read_workflow_state(
            self._state_storage().key_value, workflow_name, workflow_id
        )

    async def close(self) -> None:
        if self._owned_storage is not None:
            await self._owned_storage.close()


@asynccontextmanager
async def open_session(path: str) -> AsyncIterator[CliSession]:
    """Connect a client from the configuration at ``path`` (with ``INFINITIC__...``
    environment variables applied), running its workers in this process when the transport is
    in memory.

    Raises:
        ConfigurationError: the file or its transport section is missing or invalid.
    """
    data = apply_env_overrides(load_yaml(path))
    if is_in_memory(data):
        from infinitic.worker._config import load_config
        from infinitic.worker._worker import InfiniticWorker

        config = load_config(data, environ={})
        worker = InfiniticWorker.from_config(config)
        try:
            if config.services or config.workflows:
                await worker.start()
            else:
                print(
                    f"infinitic: {path} names the in-memory transport and runs nothing: "
                    "nothing will answer",
                    file=sys.stderr,
                )
            session = CliSession(worker.client, data, worker.storage, path)
            yield session
        finally:
            await worker.close()
        return
    client = InfiniticClient.from_config(data)
    session = CliSession(client, data, None, path)
    try:
        await client.start()
        yield session
    finally:
        await client.close()
        await session.close()


async def for_each(
    ids: Sequence[str],
    operation: Callable[[str], Any],
    *,
    label: str,
    concurrency: int = 64,
) -> dict[str, str]:
    """Run ``await operation(id)`` for every id, ``concurrency`` at once, with a progress bar
    on standard error when standard output is a terminal and there are several ids.

    Returns:
        The errors by id (empty: every operation succeeded).
    """
    import asyncio

    errors: dict[str, str] = {}
    gate = asyncio.Semaphore(concurrency)
    show = len(ids) > 1 and sys.stdout.isatty()
    progress: Any = None
    task: Any = None
    if show:
        from rich.console import Console
        from rich.progress import Progress

        progress = Progress(console=Console(stderr=True), transient=True)
        progress.start()
        task = progress.add_task(label, total=len(ids))

    async def one(workflow_id: str) -> None:
        async with gate:
            try:
                await operation(workflow_id)
            except Exception as e:
                errors[workflow_id] = f"{type(e).__name__}: {e}"
            if progress is not None:
                progress.advance(task)

    try:
        async with asyncio.TaskGroup() as group:
            for workflow_id in ids:
                group.create_task(one(workflow_id))
    finally:
        if progress is not None:
            progress.stop()
    return errors
