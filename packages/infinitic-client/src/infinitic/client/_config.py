"""Reading a client's configuration: the ``transport:`` and ``client:`` sections of the same
YAML file workers read, with the ``INFINITIC__TRANSPORT__...`` and ``INFINITIC__CLIENT__...``
environment variables over them (read by pydantic-settings: :class:`ClientDocument`); the other
sections (``name:`` included: it names the worker, and each client needs a unique name) and
their variables are the workers' business and ignored."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from infinitic.client._watch import DEFAULT_UNREGISTERED_WARNING
from infinitic.exceptions import ConfigurationError
from infinitic.transport import (
    InfiniticSettings,
    Transport,
    normalize_key,
    transport_from_config,
)


def load_yaml(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a YAML configuration file into a mapping.

    Raises:
        ConfigurationError: the file cannot be read, is not YAML, or is not a mapping.
    """
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigurationError(f"cannot read the configuration file {file}: {e}") from e
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ConfigurationError(f"{file} is not valid YAML: {e}") from e
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigurationError(f"{file} must hold a mapping at its top level")
    return data


DEFAULT_REQUEST_TIMEOUT = 30.0  # seconds a client waits for a tag engine's answer


@dataclass(frozen=True)
class ClientSettings:
    """What a configuration says of a client.

    Attributes:
        transport: built for a client.
        name: ``client.name``; None: a unique name is generated.
        request_timeout: ``client.requestTimeoutSeconds`` (default 30; None: none).
        unregistered_warning: ``client.unregisteredWarningSeconds`` (default 30; None: no
            warning).
    """

    transport: Transport
    name: str | None
    request_timeout: float | None
    unregistered_warning: float | None


def _seconds(client: Mapping[str, Any], camel: str, snake: str, default: float) -> float | None:
    value = client.get(camel, client.get(snake, default))
    if value is not None and (
        isinstance(value, bool) or not isinstance(value, int | float) or value <= 0
    ):
        raise ConfigurationError(f"client.{camel} must be a positive number or null, got {value!r}")
    return None if value is None else float(value)


class ClientDocument(InfiniticSettings, extra="ignore"):
    """What a client reads of a configuration (checked by :func:`client_settings`).

    Attributes:
        transport: the ``transport:`` section.
        client: the ``client:`` section.
    """

    transport: Any = None
    client: Any = None


def client_settings(
    config: Mapping[str, Any], *, environ: Mapping[str, str] | None = None
) -> ClientSettings:
    """The client settings of a configuration: its transport (built for a client) and its
    ``client:`` section.

    Environment variables ``INFINITIC__TRANSPORT__...`` and ``INFINITIC__CLIENT__...`` (of
    ``environ``, default ``os.environ``) override keys (see
    :class:`infinitic.transport.InfiniticEnvSource`).

    Raises:
        ConfigurationError: the transport section is missing or invalid (naming the key).
    """
    document = ClientDocument.read(config, environ=environ)
    section = document.transport
    if isinstance(section, Mapping):  # a worker's setting, beside the transport's name
        section = {
            k: v
            for k, v in section.items()
            if normalize_key(str(k)) != "shutdowngraceperiodseconds"
        }
    transport = transport_from_config(section, role="client")
    client = document.client or {}
    if not isinstance(client, Mapping):
        raise ConfigurationError(f"client must be a mapping, got {client!r}")
    known = {
        "name",
        "requestTimeoutSeconds",
        "request_timeout_seconds",
        "unregisteredWarningSeconds",
        "unregistered_warning_seconds",
    }
    unknown = {str(k) for k in client} - known
    if unknown:
        raise ConfigurationError(f"client: unknown keys {sorted(unknown)}")
    name = client.get("name")
    if name is not None and not isinstance(name, str):
        raise ConfigurationError(f"client.name must be a string, got {name!r}")
    return ClientSettings(
        transport,
        name,
        _seconds(
            client, "requestTimeoutSeconds", "request_timeout_seconds", DEFAULT_REQUEST_TIMEOUT
        ),
        _seconds(
            client,
            "unregisteredWarningSeconds",
            "unregistered_warning_seconds",
            DEFAULT_UNREGISTERED_WARNING,
        ),
    )
