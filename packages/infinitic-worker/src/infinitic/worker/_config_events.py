"""``eventListener:`` and ``events:`` of a worker's configuration (Infinitic's keys)::

events: true            # publish what the engines do (the default; false: nothing extra)
eventListener:
  class: my_app.listeners.AuditListener   # a callable (a class is built with no argument)
  concurrency: 2                          # listener calls at once
  subscriptionName: audit                 # a new name reads the topics from the start
  batch: {maxMessages: 500, maxSeconds: 0.5}
  services: {allow: [PaymentService], deny: [], listRefreshSeconds: 60}
  workflows: {deny: [InternalWorkflow]}
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic.alias_generators import to_camel

from infinitic.transport import normalize_key

DEFAULT_SUBSCRIPTION = "infinitic-event-listener"


class _EventSection(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True
    )

    #: Other names of a field (normalized key -> field name).
    renamed_keys: ClassVar[dict[str, str]] = {}

    @model_validator(mode="before")
    @classmethod
    def _keys(cls, data: Any) -> Any:
        """Keys in any case and with or without underscores (``max_messages``,
        ``maxMessages``), and Infinitic's other names."""
        if not isinstance(data, Mapping):
            return data
        names: dict[str, str] = {}
        for name, field in cls.model_fields.items():
            names[normalize_key(name)] = field.alias or name
        for other, name in cls.renamed_keys.items():
            names[other] = cls.model_fields[name].alias or name
        return {names.get(normalize_key(str(k)), k): v for k, v in data.items()}


class EventBatchConfig(_EventSection):
    """``eventListener.batch``: the listener is called with up to ``max_messages`` events, at
    the latest ``max_seconds`` after the first of them arrived."""

    max_messages: int = Field(default=1000, ge=1)
    max_seconds: float = Field(default=1.0, gt=0)


class EntityListConfig(_EventSection):
    """``eventListener.services`` / ``eventListener.workflows``: which ones are listened to.

    Attributes:
        allow: only these (and they are listened to even if this worker does not run them);
            None: those this worker runs.
        deny: never these (Infinitic's ``disallow`` is accepted too).
        list_refresh_seconds: Infinitic's period of discovery of new services and
            workflows; kept for compatibility: the transports of Infinitic for Python have no
            admin API to list topics, so the list is the worker's plus ``allow``.
    """

    allow: list[str] | None = None
    deny: list[str] = Field(default_factory=list)
    list_refresh_seconds: float = Field(default=60.0, gt=0)

    renamed_keys: ClassVar[dict[str, str]] = {"disallow": "deny"}

    def selects(self, name: str) -> bool:
        """True when ``name`` passes the allow and deny lists."""
        return name not in self.deny and (self.allow is None or name in self.allow)

    def chosen(self, own: list[str]) -> list[str]:
        """The names listened to, given those the worker runs."""
        candidates = own if self.allow is None else [*own, *self.allow]
        return sorted({n for n in candidates if self.selects(n)})


class EventListenerConfig(_EventSection):
    """``eventListener``: a callable receiving batches of CloudEvents (see the README).

    Attributes:
        class_: dotted path of the listener: a callable, or a class built with no argument
            whose instances are callable (``__call__(self, events)``, async or not).
        concurrency: listener calls running at once.
        subscription_name: the subscription on the events topics (default
            ``infinitic-event-listener``); a new name reads them from the start.
        batch: how events are grouped per call.
        services: which services' events are listened to.
        workflows: which workflows' events are listened to.
    """

    class_: str | None = Field(default=None, alias="class", min_length=1)
    concurrency: int = Field(default=1, ge=1)
    subscription_name: str | None = Field(default=None, min_length=1)
    batch: EventBatchConfig = Field(default_factory=EventBatchConfig)
    services: EntityListConfig = Field(default_factory=EntityListConfig)
    workflows: EntityListConfig = Field(default_factory=EntityListConfig)

    @property
    def subscription(self) -> str:
        """The subscription name used."""
        return self.subscription_name or DEFAULT_SUBSCRIPTION
