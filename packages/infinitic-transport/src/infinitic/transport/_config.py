"""Building a transport from the ``transport:`` section of a configuration.

The section names one transport::

    transport:
      pulsar: {brokerServiceUrl: pulsar://localhost:6650, tenant: infinitic, namespace: dev}

``inMemory`` is built here. Every other name is looked up in the ``infinitic.transports`` entry
point group, which transport distributions register (infinitic-transport-pulsar registers
``pulsar`` and ``pulsarLite``), so clients and workers build transports they do not import.

Environment variables override any key: ``INFINITIC__TRANSPORT__PULSAR__TENANT=prod`` sets
``transport.pulsar.tenant`` (see :mod:`infinitic.transport._env`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any, Protocol

from infinitic.exceptions import ConfigurationError
from infinitic.transport._env import normalize_key
from infinitic.transport._in_memory import InMemoryTransport
from infinitic.transport._interfaces import Transport

TRANSPORT_ENTRY_POINTS = "infinitic.transports"
"""The entry point group of transport builders (see :class:`TransportBuilder`)."""


@dataclass(frozen=True, slots=True)
class TransportContext:
    """What a transport builder knows of who asks.

    Attributes:
        role: ``"worker"`` (may start an embedded broker it then owns) or ``"client"``
            (only connects).
        path: the configuration key of the section, for error messages
            (e.g. ``"transport.pulsar"``).
    """

    role: str
    path: str


class TransportBuilder(Protocol):
    """Builds a transport from its section's options (a mapping of YAML values).

    Raises:
        ConfigurationError: an option is invalid; the message names its key under
            ``context.path``.
    """

    def __call__(self, options: Mapping[str, Any], context: TransportContext) -> Transport: ...


def _in_memory(options: Mapping[str, Any], context: TransportContext) -> Transport:
    if options:
        raise ConfigurationError(
            f"{context.path} takes no option, got {', '.join(sorted(map(str, options)))}"
        )
    return InMemoryTransport()


_BUILT_IN: dict[str, Callable[[Mapping[str, Any], TransportContext], Transport]] = {
    "inmemory": _in_memory,
}


def transport_builders() -> dict[str, Callable[[Mapping[str, Any], TransportContext], Transport]]:
    """The available transport builders by normalized name (built-in and entry points)."""
    builders = dict(_BUILT_IN)
    for ep in entry_points(group=TRANSPORT_ENTRY_POINTS):
        builders.setdefault(normalize_key(ep.name), _lazy(ep.name, ep.load))
    return builders


def _lazy(
    name: str, load: Callable[[], Any]
) -> Callable[[Mapping[str, Any], TransportContext], Transport]:
    def build(options: Mapping[str, Any], context: TransportContext) -> Transport:
        try:
            builder = load()
        except ImportError as e:
            raise ConfigurationError(
                f"{context.path}: the {name} transport cannot be loaded: {e}"
            ) from e
        transport = builder(options, context)
        if not isinstance(transport, Transport):
            raise ConfigurationError(f"{context.path}: {name} did not build a Transport")
        return transport

    return build


def transport_from_config(
    section: Mapping[str, Any] | None, *, role: str = "client", path: str = "transport"
) -> Transport:
    """Build the transport described by a ``transport:`` section.

    Args:
        section: a mapping with exactly one transport name (``inMemory``, ``pulsar``,
            ``pulsarLite``, or any registered name) whose value holds its options.
        role: ``"worker"`` or ``"client"`` (an embedded broker is started by workers only).
        path: where the section sits in the configuration (error messages).

    Raises:
        ConfigurationError: no transport, several, an unknown one or an invalid option; the
            message names the key.
    """
    if not section:
        raise ConfigurationError(f"{path}: name a transport, e.g. {path}.pulsar or {path}.inMemory")
    if not isinstance(section, Mapping):
        raise ConfigurationError(f"{path} must be a mapping, got {type(section).__name__}")
    names = [str(k) for k in section]
    builders = transport_builders()
    unknown = [n for n in names if normalize_key(n) not in builders]
    if unknown:
        known = ", ".join(sorted({"inMemory", *(ep.name for ep in _registered())}))
        raise ConfigurationError(
            f"{path}.{unknown[0]}: unknown transport (known: {known}; "
            "is its distribution installed?)"
        )
    if len(names) != 1:
        raise ConfigurationError(f"{path}: name exactly one transport, got {', '.join(names)}")
    name = names[0]
    options = section[name] or {}
    if not isinstance(options, Mapping):
        raise ConfigurationError(f"{path}.{name} must be a mapping, got {options!r}")
    return builders[normalize_key(name)](options, TransportContext(role, f"{path}.{name}"))


def _registered() -> list[Any]:
    return list(entry_points(group=TRANSPORT_ENTRY_POINTS))
