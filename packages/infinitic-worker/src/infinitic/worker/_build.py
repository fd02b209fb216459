"""Building a worker's transport, storage, services and workflows from its configuration.

Classes named in the configuration are imported by their dotted path (``package.module.Name``);
nothing else from the file is ever executed.
"""

from __future__ import annotations

import dataclasses
import importlib
import typing
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from pydantic import ConfigDict, TypeAdapter, ValidationError

from infinitic.common import ExponentialBackoff, entity_name
from infinitic.exceptions import ConfigurationError
from infinitic.storage import CompressedKeyValueStorage, InMemoryStorage, Storage
from infinitic.transport import Transport, normalize_key, transport_from_config
from infinitic.worker._config import (
    EngineConfig,
    InfiniticConfig,
    ServiceConfig,
    StorageConfig,
    WorkflowConfig,
)
from infinitic.worker._preflight import broker_check, describe_storage
from infinitic.worker._secrets import hide_secrets, hide_url_password
from infinitic.workflows import Workflow

if TYPE_CHECKING:
    from infinitic.worker._worker import InfiniticWorker

# Infinitic's YAML names for some of our settings' attributes.
_ALIASES = {
    "redis": {"user": "username", "database": "db"},
    "postgres": {
        "username": "user",
        "maximumPoolSize": "max_pool_size",
        "minimumIdle": "min_pool_size",
    },
    "mysql": {
        "username": "user",
        "maximumPoolSize": "max_pool_size",
        "minimumIdle": "min_pool_size",
    },
}


def _infinitic_pool_config(options: Mapping[str, Any], where: str) -> dict[str, Any]:
    """Redis options with Infinitic's ``poolConfig: {maxTotal: n}`` as ``maxConnections``."""
    out: dict[str, Any] = {}
    for key, value in options.items():
        if normalize_key(str(key)) != "poolconfig":
            out[key] = value
            continue
        if not isinstance(value, Mapping):
            raise ConfigurationError(f"{where}.{key} must be a mapping, got {value!r}")
        for pool_key, pool_value in value.items():
            if normalize_key(str(pool_key)) == "maxtotal":
                out["max_connections"] = pool_value
            else:
                raise ConfigurationError(
                    f"{where}.{key}.{pool_key} is not supported: connections are opened on "
                    "demand up to poolConfig.maxTotal (maxConnections) and kept"
                )
    return out


def import_object(path: str, where: str) -> Any:
    """Import ``package.module.Name`` (nested attributes allowed).

    Raises:
        ConfigurationError: nothing is found at ``path`` (naming the key ``where``).
    """
    module_name, _, attribute = path.rpartition(".")
    if not module_name:
        raise ConfigurationError(f"{where}: {path!r} is not a dotted path like 'package.Class'")
    parts = [attribute]
    while module_name:
        try:
            obj: Any = importlib.import_module(module_name)
            break
        except ModuleNotFoundError as e:
            if e.name is None or not module_name.startswith(e.name):
                raise ConfigurationError(f"{where}: importing {path!r} failed: {e}") from e
            module_name, _, attribute = module_name.rpartition(".")
            parts.insert(0, attribute)
    else:
        raise ConfigurationError(f"{where}: no module found for {path!r}")
    for part in parts:
        try:
            obj = getattr(obj, part)
        except AttributeError as e:
            raise ConfigurationError(f"{where}: {path!r} not found ({e})") from e
    return obj


def settings_from_options(cls: type[Any], options: Mapping[str, Any], where: str) -> Any:
    """Build a settings dataclass from YAML options, keys in any case, values coerced to the
    attributes' types (so environment overrides given as text work).

    Raises:
        ConfigurationError: an unknown key or an invalid value (naming ``where.key``).
    """
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    by_key = {normalize_key(name): name for name in fields}
    hints = typing.get_type_hints(cls)
    aliases = {normalize_key(k): v for k, v in _ALIASES.get(where.rsplit(".", 1)[-1], {}).items()}
    kwargs: dict[str, Any] = {}
    for key, value in options.items():
        norm = normalize_key(str(key))
        name = by_key.get(norm) or aliases.get(norm)
        if name is None:
            raise ConfigurationError(
                f"{where}.{key}: unknown option (known: {', '.join(sorted(fields))})"
            )
        adapter: TypeAdapter[Any] = TypeAdapter(
            hints[name], config=ConfigDict(arbitrary_types_allowed=True)
        )
        try:
            kwargs[name] = adapter.validate_python(value)
        except ValidationError as e:
            message = e.errors()[0]["msg"]
            shown = hide_secrets({str(key): value})[str(key)]
            raise ConfigurationError(f"{where}.{key}: {message} (got {shown!r})") from e
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as e:
        raise ConfigurationError(f"{where}: {hide_url_password(str(e))}") from e


def storage_description(config: StorageConfig) -> str:
    """Where the storage of ``storage:`` is (for errors), password hidden."""
    if config.backend == "in_memory":
        return "storage.inMemory"
    return describe_storage(config.backend, getattr(config, config.backend) or {})


def _broker_url(transport: Transport) -> str | None:
    """The broker a transport built from a configuration connects to, None when it starts
    its own (an embedded broker) or has none."""
    settings = getattr(transport, "settings", None)
    url = getattr(settings, "broker_service_url", None)
    if getattr(transport, "broker", None) is not None or not isinstance(url, str):
        return None
    return url


def build_storage(config: StorageConfig) -> Storage:
    """The storage described by ``storage:`` (with compression and cache wrappers)."""
    backend = config.backend
    storage: Storage
    if backend == "in_memory":
        if config.in_memory:
            raise ConfigurationError("storage.inMemory takes no option")
        storage = InMemoryStorage()
    else:
        import infinitic.storage as module

        prefix = {"redis": "Redis", "postgres": "Postgres", "mysql": "MySQL"}[backend]
        try:
            settings_cls = getattr(module, f"{prefix}Settings")
            storage_cls = getattr(module, f"{prefix}Storage")
        except ImportError as e:
            raise ConfigurationError(f"storage.{backend}: {e}") from e
        options = getattr(config, backend) or {}
        if backend == "redis":
            options = _infinitic_pool_config(options, "storage.redis")
        storage = storage_cls(settings_from_options(settings_cls, options, f"storage.{backend}"))
    if config.compression is not None and config.compression != "none":
        try:
            kv = CompressedKeyValueStorage(
                storage.key_value, config.compression, level=config.compression_level
            )
        except ImportError as e:
            raise ConfigurationError(f"storage.compression: {e}") from e
        storage = Storage(kv, storage.key_set)
    if config.cache is not None:
        from infinitic.cache import CachedStorage

        storage = CachedStorage(storage, max_size=config.cache.size, ttl=config.cache.ttl)
    return storage


def _retry(service: ServiceConfig | WorkflowConfig, where: str) -> ExponentialBackoff | None:
    if service.retry is None:
        return None
    try:
        return ExponentialBackoff(**service.retry.model_dump())
    except ValueError as e:
        raise ConfigurationError(f"{where}.retry: {e}") from e


def _with_key(where: str, register: Any, *args: Any, **kwargs: Any) -> None:
    """Register, with the configuration key in front of a refusal's message."""
    try:
        register(*args, **kwargs)
    except ConfigurationError as e:
        raise ConfigurationError(f"{where}: {e}") from e


def _engine_storage(
    worker: InfiniticWorker, engine: EngineConfig | None, where: str
) -> Storage | None:
    """The storage an engine's ``storage:`` section names (owned and checked at start by the
    worker), None when it has none (the worker's storage)."""
    if engine is None or engine.storage is None:
        return None
    storage = build_storage(engine.storage)
    worker._own(storage.close)
    worker._name_storage(storage, f"{where}: {storage_description(engine.storage)}")
    return storage


def _add_service(worker: InfiniticWorker, service: ServiceConfig, where: str) -> None:
    implementation: object | None = None
    if service.class_ is not None:
        target = import_object(service.class_, f"{where}.class")
        try:
            implementation = target() if isinstance(target, type) else target
        except Exception as e:
            raise ConfigurationError(
                f"{where}.class: {service.class_}() failed: {type(e).__name__}: {e} "
                "(configured classes are built with no argument)"
            ) from e
    interface = (
        import_object(service.interface, f"{where}.interface") if service.interface else None
    )
    _with_key(
        where,
        worker.add_service,
        implementation,
        interface=interface,
        name=service.name,
        concurrency=service.concurrency,
        retry=_retry(service, where),
        timeout=service.timeout_seconds,
        tag_engine_concurrency=service.tag_engine.concurrency if service.tag_engine else None,
        executor=service.runs_executor,
        tag_engine=service.runs_tag_engine,
        tag_engine_storage=_engine_storage(worker, service.tag_engine, f"{where}.tagEngine"),
    )


def _add_workflow(
    worker: InfiniticWorker, workflow: WorkflowConfig, where: str, shared_storage: bool
) -> list[type]:
    """Register a workflow of the configuration; returns its classes (none for engines
    only)."""
    storages = {
        "state_engine_storage": _engine_storage(
            worker, workflow.state_engine, f"{where}.stateEngine"
        ),
        "tag_engine_storage": _engine_storage(worker, workflow.tag_engine, f"{where}.tagEngine"),
    }
    if workflow.runs_executor and not workflow.runs_state_engine and not shared_storage:
        raise ConfigurationError(
            f"{where}: a workflow executor without its state engine reads workflow histories "
            "from this worker's storage:, which must be the state engines' storage; "
            "storage.inMemory is this process's only"
        )
    if not workflow.runs_executor:  # engines only: the name, no class
        assert workflow.name is not None  # WorkflowConfig ensures it
        _with_key(where, worker.add_workflow, workflow.name, **_roles(workflow), **storages)
        return []
    key = f"{where}.class" if workflow.class_ is not None else f"{where}.classes"
    classes: list[type] = []
    for path in workflow.class_paths:
        cls = import_object(path, key)
        if not (isinstance(cls, type) and issubclass(cls, Workflow)):
            raise ConfigurationError(
                f"{key}: {path} is not a Workflow subclass (got {cls!r}); a workflow class "
                "derives from infinitic.workflows.Workflow"
            )
        _with_key(
            where,
            worker.add_workflow,
            cls,
            check_mode=workflow.check_mode,
            cache_size=workflow.cache_size,
            task_timeout=workflow.timeout_seconds,
            task_retry=_retry(workflow, where),
            **_roles(workflow),
            **storages,
        )
        classes.append(cls)
    return classes


def _roles(workflow: WorkflowConfig) -> dict[str, Any]:
    """The options of ``add_workflow`` saying what runs, and how many at once."""
    return {
        "name": workflow.name,
        "concurrency": workflow.concurrency,
        "state_engine_concurrency": (
            workflow.state_engine.concurrency if workflow.state_engine else None
        ),
        "tag_engine_concurrency": (
            workflow.tag_engine.concurrency if workflow.tag_engine else None
        ),
        "executor": workflow.runs_executor,
        "state_engine": workflow.runs_state_engine,
        "tag_engine": workflow.runs_tag_engine,
    }


def build_worker(worker_cls: type[InfiniticWorker], config: InfiniticConfig) -> InfiniticWorker:
    """A worker with the transport, storage, services and workflows of ``config``.

    The worker owns the transport and the storage built here and closes them when it closes.

    Raises:
        ConfigurationError: a section is invalid (naming the key).
    """
    if not config.transport_section:
        raise ConfigurationError(
            "transport: missing: a worker needs the transport its clients and other workers "
            "use, e.g. transport: {pulsar: {brokerServiceUrl: pulsar://host:6650}}; write "
            "transport: {inMemory: {}} to run everything in one process"
        )
    transport: Transport = transport_from_config(config.transport_section, role="worker")
    storage = build_storage(config.storage)
    worker = worker_cls(
        transport=transport,
        storage=storage,
        name=config.name,
        workflow_cache_size=config.workflow_cache_size,
        check_mode=config.check_mode,
        workflow_task_isolation=config.workflow_task_isolation,
        blocking_warning_seconds=config.blocking_warning_seconds,
        max_redeliveries=config.max_redeliveries,
        redelivery_delay=config.redelivery_delay_seconds,
        shutdown_grace_period=config.shutdown_grace_period,
        events=config.events,
        local_results=config.local_results,
        metrics=config.metrics.build() if config.metrics is not None else None,
    )
    worker._own(transport.close, storage.close)
    broker = _broker_url(transport)
    checks = [broker_check(broker, "the Pulsar broker (transport)")] if broker else []
    worker._check_at_start(*checks, storage=storage_description(config.storage))
    for i, service in enumerate(config.services):
        _add_service(worker, service, f"services.{i}")
    in_memory = any(normalize_key(str(k)) == "inmemory" for k in config.transport_section)
    shared_storage = config.storage.backend != "in_memory" or in_memory
    names: list[str] = []
    classes: list[type] = []
    for i, workflow in enumerate(config.workflows):
        found = _add_workflow(worker, workflow, f"workflows.{i}", shared_storage)
        classes += found
        names += [workflow.name] if workflow.name else [entity_name(c) for c in found[-1:]]
    listener = config.event_listener
    if listener is not None:
        if listener.class_ is None:
            raise ConfigurationError("eventListener.class: missing (the listener's dotted path)")
        worker.add_event_listener(import_object(listener.class_, "eventListener.class"), listener)
    if config.dashboard is not None:
        config.dashboard.attach(worker, names, classes)
    return worker
