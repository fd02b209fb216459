"""The configuration of a worker, in the shape of Infinitic's YAML file.

Example::

    name: bank-worker
    transport:
      pulsar: {brokerServiceUrl: pulsar://localhost:6650, tenant: infinitic, namespace: dev}
    storage:
      redis: {host: 127.0.0.1, port: 6379, keyPrefix: "bank:"}
      compression: zstd
      cache: {size: 10000, ttl: 60}
    services:
      - name: BankService
        class: bank.services.Bank
        concurrency: 10
        retry: {minimumSeconds: 1, maximumSeconds: 60, maximumRetries: 5}
        timeoutSeconds: 10
    workflows:
      - name: BankWorkflow
        class: bank.workflows.BankWorkflow
        concurrency: 10
        checkMode: simple
        stateEngine: {concurrency: 20}
        tagEngine: {concurrency: 5}

Keys are accepted in camelCase or snake_case. ``INFINITIC__<PATH>`` environment variables
override any key (``INFINITIC__STORAGE__REDIS__HOST=db``,
``INFINITIC__SERVICES__0__CONCURRENCY=5``): :class:`InfiniticConfig` is a pydantic-settings
model whose environment source (:class:`infinitic.transport.InfiniticEnvSource`) comes before
the file's values.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any, ClassVar, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ModelWrapValidatorHandler,
    PrivateAttr,
    SerializerFunctionWrapHandler,
    model_serializer,
    model_validator,
)
from pydantic.alias_generators import to_camel
from pydantic_settings import SettingsConfigDict

from infinitic.client import load_yaml
from infinitic.transport import InfiniticSettings, normalize_key
from infinitic.worker._config_dashboard import DashboardConfig
from infinitic.worker._config_events import EventListenerConfig
from infinitic.worker._config_metrics import MetricsConfig, empty_sections_on
from infinitic.worker._secrets import hide_secrets


def _canonical_keys(model: type[BaseModel], data: Any) -> Any:
    """Rename keys that match a field whatever their case and underscores (``KEY_PREFIX``,
    ``keyPrefix`` and ``keyprefix`` all name ``key_prefix``), and Infinitic's other names of a
    field (the model's ``renamed_keys``); refuse the keys of Infinitic this project does not
    support (the model's ``refused_keys``), saying why."""
    if not isinstance(data, Mapping):
        return data
    refused: Mapping[str, str] = getattr(model, "refused_keys", {})
    for key in data:
        reason = refused.get(normalize_key(str(key)))
        if reason is not None:
            raise ValueError(f"{key!r} is not supported: {reason}")
    names: dict[str, str] = {}
    for name, field in model.model_fields.items():
        names[normalize_key(name)] = field.alias or name
        if isinstance(field.validation_alias, str):
            names[normalize_key(field.validation_alias)] = field.alias or name
    renamed: Mapping[str, str] = getattr(model, "renamed_keys", {})
    for other, name in renamed.items():
        field = model.model_fields[name]
        names[other] = field.alias or name
    return {names.get(normalize_key(str(k)), k): v for k, v in data.items()}


_NO_EVENT_LISTENER = (
    "declare eventListener: at the top level of the configuration; its services: and "
    "workflows: allow and deny lists choose whose events it receives"
)
_NO_BATCH_KEY = (
    "declare a batch on the service's method with @batch(max_messages=..., max_seconds=...) "
    "from infinitic.services"
)


class _Section(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True
    )

    @model_validator(mode="before")
    @classmethod
    def _keys(cls, data: Any) -> Any:
        return _canonical_keys(cls, data)


class CacheConfig(_Section):
    """``storage.cache``: an LRU cache in front of the storage.

    Attributes:
        size: entries kept (``maximumSize`` is accepted too).
        ttl: seconds an entry stays valid (None: until evicted); ``expireAfterWrite`` is
            accepted too.
    """

    size: int = Field(default=10_000, ge=1, validation_alias="maximumSize")
    ttl: float | None = Field(default=None, gt=0)

    renamed_keys: ClassVar[dict[str, str]] = {"expireafterwrite": "ttl"}
    refused_keys: ClassVar[dict[str, str]] = {
        "expireafteraccess": "entries expire ttl (expireAfterWrite) seconds after they are "
        "written, and the least recently used go first when the cache is full",
    }

    @model_validator(mode="before")
    @classmethod
    def _size_alias(cls, data: Any) -> Any:
        if isinstance(data, Mapping) and "size" in data:
            data = {("maximumSize" if k == "size" else k): v for k, v in data.items()}
        return data


class StorageConfig(_Section):
    """``storage``: one backend (``redis``, ``postgres``, ``mysql`` or ``inMemory``) with its
    options, plus ``compression`` and ``cache``.

    The backend options are the attributes of :class:`~infinitic.storage.RedisSettings`,
    :class:`~infinitic.storage.PostgresSettings` or :class:`~infinitic.storage.MySQLSettings`
    (``user`` and ``database`` are accepted for Redis's ``username`` and ``db``).
    """

    redis: dict[str, Any] | None = None
    postgres: dict[str, Any] | None = None
    mysql: dict[str, Any] | None = None
    in_memory: dict[str, Any] | None = None
    compression: Literal["zstd", "gzip", "none"] | None = None
    compression_level: int | None = None
    cache: CacheConfig | None = None

    def __repr_args__(self) -> Any:
        # The backend options are plain data: passwords (and URLs holding one) are hidden.
        for name, value in super().__repr_args__():
            yield name, hide_secrets(value) if isinstance(value, dict) else value

    @model_validator(mode="before")
    @classmethod
    def _empty_sections(cls, data: Any) -> Any:
        # ``inMemory:`` with nothing after it is an empty section, not a missing one, unless
        # another backend is set (``INFINITIC__STORAGE__IN_MEMORY=null`` removes it).
        if isinstance(data, Mapping):
            backends = {"redis", "postgres", "mysql", "inmemory"}
            empty = {k for k, v in data.items() if v is None and normalize_key(str(k)) in backends}
            if len(empty) == len([k for k in data if normalize_key(str(k)) in backends]):
                data = {k: ({} if k in empty else v) for k, v in data.items()}
            else:
                data = {k: v for k, v in data.items() if k not in empty}
        return data

    @model_validator(mode="before")
    @classmethod
    def _compression(cls, data: Any) -> Any:
        if isinstance(data, Mapping):
            for key, value in data.items():
                if normalize_key(str(key)) == "compression" and str(value).lower() in (
                    "bzip2",
                    "deflate",
                ):
                    raise ValueError(
                        f"compression {value!r} is not supported: use zstd (extra "
                        "infinitic-storage[zstd]) or gzip; values are recognized on read, so "
                        "the setting may change at any time"
                    )
        return data

    @model_validator(mode="after")
    def _one_backend(self) -> StorageConfig:
        names = ("redis", "postgres", "mysql", "in_memory")
        chosen = [n for n in names if getattr(self, n) is not None]
        if len(chosen) > 1:
            raise ValueError(f"name one storage backend, got {' and '.join(chosen)}")
        return self

    @property
    def backend(self) -> str:
        """The chosen backend: ``redis``, ``postgres``, ``mysql`` or ``in_memory`` (default)."""
        for name in ("redis", "postgres", "mysql"):
            if getattr(self, name) is not None:
                return name
        return "in_memory"


class RetryConfig(_Section):
    """``retry`` of a service: :class:`~infinitic.services.ExponentialBackoff` fields.

    ``ignoredExceptions`` lists exception class names (or qualified names) never retried;
    Infinitic's ``backoffCoefficient`` is accepted for ``coefficient``.
    """

    minimum_seconds: float = Field(default=1.0, ge=0)
    maximum_seconds: float = Field(default=1000.0, ge=0)
    coefficient: float = Field(default=2.0, ge=1)
    random_factor: float = Field(default=0.5, ge=0, le=1)
    maximum_retries: int = Field(default=11, ge=0)
    ignored_exceptions: list[str] = Field(default_factory=list)

    renamed_keys: ClassVar[dict[str, str]] = {"backoffcoefficient": "coefficient"}


class EngineConfig(_Section):
    """A ``tagEngine`` or ``stateEngine`` sub-section: its presence runs that engine.

    Attributes:
        concurrency: messages handled at once by that engine (default: the item's
            ``concurrency``).
        storage: where that engine keeps its data (default: the worker's ``storage:``), in
            the same shape as the worker's section (with its own compression and cache).
    """

    concurrency: int | None = Field(default=None, ge=1)
    storage: StorageConfig | None = None

    refused_keys: ClassVar[dict[str, str]] = {
        "cache": "put the cache in the engine's own storage: section (storage: {redis: ..., "
        "cache: ...}), or in the worker's",
    }


_ROLE_KEYS = ("executor", "stateengine", "tagengine")


def _empty_role_sections(data: Any) -> Any:
    """``stateEngine:`` with nothing after it is an empty section (the engine runs with its
    defaults), not a missing one."""
    if isinstance(data, Mapping):
        return {
            k: ({} if v is None and normalize_key(str(k)) in _ROLE_KEYS else v)
            for k, v in data.items()
        }
    return data


def _has_executor_section(data: Any) -> bool:
    return isinstance(data, Mapping) and any(normalize_key(str(k)) == "executor" for k in data)


def _merge_executor(data: Any) -> Any:
    """Accept Infinitic's ``executor:`` sub-section as well as flat keys."""
    data = _empty_role_sections(data)
    if isinstance(data, Mapping):
        executor = next((v for k, v in data.items() if str(k).lower() == "executor"), None)
        if isinstance(executor, Mapping):
            rest = {k: v for k, v in data.items() if str(k).lower() != "executor"}
            return {**executor, **rest}  # flat keys (and their overrides) win
    return data


class _RolesSection(_Section):
    """An item of ``services`` or ``workflows``: which of its roles this worker runs.

    With a class and no ``executor:`` section, everything runs (the executor and every engine);
    with an ``executor:`` section, the executor and the engines whose sections are present;
    without a class, only the engines whose sections are present.
    """

    _executor_section: bool = PrivateAttr(default=False)

    @model_validator(mode="wrap")
    @classmethod
    def _roles(cls, data: Any, handler: ModelWrapValidatorHandler[Any]) -> Any:
        model = handler(data)
        model._executor_section = _has_executor_section(data)
        return model

    @model_serializer(mode="wrap")
    def _nest_executor(self, handler: SerializerFunctionWrapHandler) -> Any:
        # Read back, a dump must run the same roles: keep the executor: section it came in.
        data = handler(self)
        if not self._executor_section or not isinstance(data, dict):
            return data
        outside = {"name", "stateEngine", "state_engine", "tagEngine", "tag_engine"}
        executor = {k: v for k, v in data.items() if k not in outside}
        return {**{k: v for k, v in data.items() if k in outside}, "executor": executor}

    def _has_code(self) -> bool:
        raise NotImplementedError

    @property
    def runs_executor(self) -> bool:
        """This worker runs the executor (a class is named)."""
        return self._has_code()

    def _runs_engine(self, section: EngineConfig | None) -> bool:
        if section is not None:
            return True
        return self._has_code() and not self._executor_section

    @property
    def runs_tag_engine(self) -> bool:
        """This worker runs the tag engine."""
        return self._runs_engine(getattr(self, "tag_engine", None))


class ServiceConfig(_RolesSection):
    """An item of ``services``: its executor (``class``, flat or in an ``executor:``
    section) and its tag engine (``tagEngine:``); see :class:`_RolesSection` for which run.

    Attributes:
        name: the service name (default: the interface's declared name; needed without a
            class).
        class_: dotted path of the implementation class (built with no argument) or of an
            instance; key ``class``. None: the tag engine only.
        interface: dotted path of the contract (default: the implementation's class).
        concurrency: tasks run at once.
        retry: the retry policy when none is declared on the implementation.
        timeout_seconds: execution timeout when none is declared on the method.
        tag_engine: the service's tag engine (``concurrency``).
    """

    name: str | None = None
    class_: str | None = Field(default=None, alias="class")
    interface: str | None = None
    concurrency: int = Field(default=1, ge=1)
    retry: RetryConfig | None = None
    timeout_seconds: float | None = Field(default=None, gt=0)
    tag_engine: EngineConfig | None = None

    refused_keys: ClassVar[dict[str, str]] = {
        "batch": _NO_BATCH_KEY,
        "eventlistener": _NO_EVENT_LISTENER,
    }

    @model_validator(mode="before")
    @classmethod
    def _executor(cls, data: Any) -> Any:
        return _canonical_keys(cls, _merge_executor(data))

    @model_validator(mode="after")
    def _something_to_run(self) -> ServiceConfig:
        if self.class_ is None:
            if self.tag_engine is None:
                raise ValueError(
                    "nothing to run: name the implementation with class: (in executor: or "
                    "flat), or run the tag engine only with tagEngine:"
                )
            if self.name is None and self.interface is None:
                raise ValueError("a tag engine without a class needs the service's name:")
        return self

    def _has_code(self) -> bool:
        return self.class_ is not None


class WorkflowConfig(_RolesSection):
    """An item of ``workflows``: its executor (``class``/``classes``, flat or in an
    ``executor:`` section), its state engine (``stateEngine:``) and its tag engine
    (``tagEngine:``); see :class:`_RolesSection` for which run.

    Attributes:
        name: the workflow name (default: the class's declared name; needed without a class).
        class_: dotted path of the Workflow subclass; key ``class``.
        classes: the dotted paths of its versions (``BankWorkflow``, ``BankWorkflow_2``), as
            Infinitic's ``classes:``; instead of ``class``. Neither: engines only.
        concurrency: workflow tasks run at once (and the engines' default concurrency).
        check_mode: ``none``, ``simple`` or ``strict`` (default: the worker's).
        cache_size: live instances kept in memory (default: the worker's ``workflowCacheSize``).
        timeout_seconds: how long a workflow task's code may run before it is stopped and
            fails (default 60, as in Infinitic's workflow executor).
        retry: the retry policy of failed workflow tasks (default: one declared with
            ``@retry`` on the workflow, else none).
        state_engine: the workflow's state engine (``concurrency``).
        tag_engine: the workflow's tag engine (``concurrency``).
    """

    name: str | None = None
    class_: str | None = Field(default=None, alias="class")
    classes: list[str] | None = None
    concurrency: int = Field(default=1, ge=1)
    check_mode: Literal["none", "simple", "strict"] | None = None
    cache_size: int | None = Field(default=None, ge=0)
    timeout_seconds: float | None = Field(default=None, gt=0)
    retry: RetryConfig | None = None
    state_engine: EngineConfig | None = None
    tag_engine: EngineConfig | None = None

    refused_keys: ClassVar[dict[str, str]] = {
        "batch": "workflow tasks are not batched",
        "eventlistener": _NO_EVENT_LISTENER,
    }

    @model_validator(mode="before")
    @classmethod
    def _executor(cls, data: Any) -> Any:
        return _canonical_keys(cls, _merge_executor(data))

    @model_validator(mode="after")
    def _one_way_to_name_classes(self) -> WorkflowConfig:
        if self.class_ is not None and self.classes:
            raise ValueError(
                "name the workflow's class with class: (or its versions with classes: [...]), "
                "one of them"
            )
        if not self._has_code():
            if self.state_engine is None and self.tag_engine is None:
                raise ValueError(
                    "nothing to run: name the workflow's class with class: (or its versions "
                    "with classes: [...]), or run its engines only with stateEngine: and/or "
                    "tagEngine:"
                )
            if self.name is None:
                raise ValueError("engines without a class need the workflow's name:")
        return self

    def _has_code(self) -> bool:
        return self.class_ is not None or bool(self.classes)

    @property
    def runs_state_engine(self) -> bool:
        """This worker runs the state engine."""
        return self._runs_engine(self.state_engine)

    @property
    def class_paths(self) -> list[str]:
        """The dotted paths of the workflow's classes (its versions), oldest first."""
        return [self.class_] if self.class_ is not None else list(self.classes or [])


DEFAULT_SHUTDOWN_GRACE_PERIOD = 30.0
_GRACE_KEY = "shutdowngraceperiodseconds"


def grace_period_of(transport: Mapping[str, Any]) -> float | None:
    """``transport.shutdownGracePeriodSeconds`` (any spelling), None when absent.

    Raises:
        ValueError: it is not a number >= 0.
    """
    for key, value in transport.items():
        if normalize_key(str(key)) == _GRACE_KEY and value is not None:
            if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
                raise ValueError(f"transport.{key} must be a number of seconds >= 0, got {value!r}")
            return float(value)
    return None


def transport_only(transport: Mapping[str, Any]) -> dict[str, Any]:
    """The ``transport:`` section without ``shutdownGracePeriodSeconds``."""
    return {k: v for k, v in transport.items() if normalize_key(str(k)) != _GRACE_KEY}


class InfiniticConfig(InfiniticSettings):
    """A whole configuration file (see the module documentation for an example).

    Attributes:
        name: the worker's name (logs).
        client: read by clients only (``client.name``: a unique client name;
            ``client.requestTimeoutSeconds``: how long to wait for a tag engine, default 30).
        transport: one transport name with its options (``pulsar``, ``pulsarLite``,
            ``inMemory``), resolved through :func:`infinitic.transport.transport_from_config`;
            a worker refuses a configuration without one (``inMemory`` must be explicit).
        storage: the storage.
        services: the services this worker runs.
        workflows: the workflows this worker runs.
        workflow_cache_size: default live instances kept in memory per workflow.
        check_mode: default replay check mode (``strict`` also reports non-deterministic
            calls of workflow code at the call).
        workflow_task_isolation: where workflow code runs: ``auto``, ``thread`` or ``loop``
            (see ``InfiniticWorker``).
        blocking_warning_seconds: workflow code running this long without yielding is
            reported (null: never).
        max_redeliveries: failed deliveries of a message before it is dead-lettered.
        redelivery_delay_seconds: pause before a failed message is delivered again.
        shutdown_grace_period_in_seconds: Infinitic's older key for
            ``transport.shutdownGracePeriodSeconds`` (see :attr:`shutdown_grace_period`).
        events: the engines publish what they do for event listeners (default true).
        local_results: a service executor's result for a state engine of the same worker is
            handed to it directly, not through the broker (null, the default: on unless the
            transport is ``inMemory``; see ``InfiniticWorker``).
        event_listener: a listener of CloudEvents run by this worker (see
            :class:`~infinitic.worker.EventListenerConfig`).
        metrics: the Prometheus endpoint (off without the section; see
            :class:`~infinitic.worker.MetricsConfig`).
        dashboard: the web dashboard this worker serves (off without the section; package
            infinitic-dashboard; see :class:`~infinitic.worker.DashboardConfig`).
    """

    model_config = SettingsConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True
    )

    refused_keys: ClassVar[dict[str, str]] = {
        "logs": "configure Python's logging instead (infinitic worker --log-level, or "
        "logging.config in your program)",
    }

    name: str | None = None
    client: dict[str, Any] | None = None
    transport: dict[str, Any] | None = None
    storage: StorageConfig = Field(default_factory=StorageConfig)
    services: list[ServiceConfig] = Field(default_factory=list)
    workflows: list[WorkflowConfig] = Field(default_factory=list)
    workflow_cache_size: int = Field(default=10_000, ge=0)
    check_mode: Literal["none", "simple", "strict"] = "simple"
    workflow_task_isolation: Literal["auto", "thread", "loop"] = "auto"
    blocking_warning_seconds: float | None = Field(default=0.2, gt=0)
    max_redeliveries: int = Field(default=3, ge=0)
    redelivery_delay_seconds: float = Field(default=1.0, ge=0)
    shutdown_grace_period_in_seconds: float | None = Field(default=None, ge=0)
    events: bool = True
    local_results: bool | None = None
    event_listener: EventListenerConfig | None = None
    metrics: MetricsConfig | None = None
    dashboard: DashboardConfig | None = None

    @property
    def shutdown_grace_period(self) -> float:
        """Seconds a stopping worker waits for in-flight messages: Infinitic 0.18's
        ``transport.shutdownGracePeriodSeconds``, else the older top-level
        ``shutdownGracePeriodInSeconds``, else 30."""
        value = grace_period_of(self.transport or {})
        if value is None:
            value = self.shutdown_grace_period_in_seconds
        return DEFAULT_SHUTDOWN_GRACE_PERIOD if value is None else value

    @property
    def transport_section(self) -> dict[str, Any]:
        """``transport:`` without the keys that are not a transport's name."""
        return transport_only(self.transport or {})

    @model_validator(mode="after")
    def _grace_period(self) -> InfiniticConfig:
        grace_period_of(self.transport or {})  # raises on a bad value
        return self

    @model_validator(mode="before")
    @classmethod
    def _keys(cls, data: Any) -> Any:
        return _canonical_keys(cls, empty_sections_on(data, "metrics", "dashboard"))


def load_config(
    source: Mapping[str, Any] | str | os.PathLike[str],
    *,
    environ: Mapping[str, str] | None = None,
) -> InfiniticConfig:
    """Validate a configuration (a mapping, or the path of a YAML file), with the
    ``INFINITIC__...`` environment variables applied over it.

    Raises:
        ConfigurationError: the file cannot be read, or a key is unknown or invalid (the
            message names it, e.g. ``services.0.concurrency``).
    """
    data = load_yaml(source) if isinstance(source, str | os.PathLike) else source
    where = f" in {source}" if isinstance(source, str | os.PathLike) else ""
    return InfiniticConfig.read(data, environ=environ, where=where)
