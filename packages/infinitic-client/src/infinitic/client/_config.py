"""Reading a client's configuration: the ``transport:`` section of the same YAML file workers
read; the other sections (``name:`` included: it names the worker, and each client needs a
unique name) are the workers' business and ignored."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from infinitic.exceptions import ConfigurationError
from infinitic.transport import (
    Transport,
    apply_env_overrides,
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


def client_settings(config: Mapping[str, Any]) -> tuple[Transport, str | None, float | None]:
    """Return the transport (built for a client), the client name (``client.name`` if set,
    else None: a unique name is generated) and request timeout
    (``client.requestTimeoutSeconds``, default 30; null: none) of a configuration.

    Environment variables ``INFINITIC__...`` override keys (see
    :func:`infinitic.transport.apply_env_overrides`).

    Raises:
        ConfigurationError: the transport section is missing or invalid (naming the key).
    """
    data = apply_env_overrides(config)
    section = next((v for k, v in data.items() if str(k).lower() == "transport"), None)
    if isinstance(section, Mapping):  # a worker's setting, beside the transport's name
        section = {
            k: v
            for k, v in section.items()
            if normalize_key(str(k)) != "shutdowngraceperiodseconds"
        }
    transport = transport_from_config(section, role="client")
    client = next((v for k, v in data.items() if str(k).lower() == "client"), None) or {}
    if not isinstance(client, Mapping):
        raise ConfigurationError(f"client must be a mapping, got {client!r}")
    known = {"name", "requestTimeoutSeconds", "request_timeout_seconds"}
    unknown = {str(k) for k in client} - known
    if unknown:
        raise ConfigurationError(f"client: unknown keys {sorted(unknown)}")
    name = client.get("name")
    if name is not None and not isinstance(name, str):
        raise ConfigurationError(f"client.name must be a string, got {name!r}")
    timeout = client.get(
        "requestTimeoutSeconds", client.get("request_timeout_seconds", DEFAULT_REQUEST_TIMEOUT)
    )
    if timeout is not None and (
        isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout <= 0
    ):
        raise ConfigurationError(
            f"client.requestTimeoutSeconds must be a positive number or null, got {timeout!r}"
        )
    return transport, name, None if timeout is None else float(timeout)
