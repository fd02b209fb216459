"""``INFINITIC__...`` environment variables over a configuration, read by pydantic-settings.

``INFINITIC__STORAGE__REDIS__HOST=db`` sets ``storage.redis.host``: the variable's name, after
the prefix, is the key's path with ``__`` between its parts, in any case, in camelCase or
snake_case (``KEY_PREFIX`` sets ``keyPrefix``); a number is an index in a list the file
declares (``INFINITIC__SERVICES__0__CONCURRENCY=5``). A value is read as JSON when it is JSON
(numbers, booleans, ``null``, lists, objects), else as a string.

A configuration is a pydantic-settings model (:class:`InfiniticSettings`) whose sources are, by
priority, the environment (:class:`InfiniticEnvSource`, an ``EnvSettingsSource``), then the
values it is built with (the YAML files'). No ``.env`` file and no secrets directory are read.
:meth:`InfiniticSettings.read` turns every error into a :class:`ConfigurationError` naming the
key, the value given, what was expected and, for a value from the environment, the variable.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, Self

from pydantic import ValidationError
from pydantic.alias_generators import to_camel
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from infinitic.exceptions import ConfigurationError

ENV_PREFIX = "INFINITIC__"
"""The prefix of the environment variables that set configuration keys."""

_DELIMITER = "__"

#: Where a configuration key's value came from: the variable and its text.
Origin = tuple[str, str]


def normalize_key(key: str) -> str:
    """A key as compared with field names: lower case, without ``_`` or ``-``."""
    return re.sub(r"[_\-]", "", key).lower()


class InfiniticEnvSource(EnvSettingsSource):
    """The ``INFINITIC__...`` environment variables, laid over a configuration's values.

    pydantic-settings reads the variables (prefix and names without regard to case); this
    source matches each path part with the keys the configuration already has (so
    ``KEY_PREFIX`` sets the file's ``keyPrefix``) or with the settings model's fields, takes a
    number as an index in a list, and returns each top-level section it changed whole (lists
    are replaced whole when pydantic-settings merges sources). A variable naming no field of
    a model that ignores unknown keys is ignored; of any other model it is kept, so that the
    model's validation refuses it by name.

    Args:
        settings_cls: the settings model.
        base: the values the variables are laid over (the model's init values).
        environ: the variables (default ``os.environ``).
        prefix: the variables' prefix.

    Attributes:
        origins: the normalized path of each key set, with its variable and text (errors).
    """

    def __init__(
        self,
        settings_cls: type[BaseSettings],
        base: Mapping[str, Any] | None = None,
        *,
        environ: Mapping[str, str] | None = None,
        prefix: str = ENV_PREFIX,
    ) -> None:
        self._environ: Mapping[str, str] = os.environ if environ is None else environ
        self._base: Mapping[str, Any] = base or {}
        self.origins: dict[tuple[str, ...], Origin] = {}
        super().__init__(
            settings_cls,
            case_sensitive=False,
            env_prefix=prefix,
            env_nested_delimiter=_DELIMITER,
        )

    def _load_env_vars(self) -> Mapping[str, str | None]:
        return {name.lower(): value for name, value in self._environ.items()}

    def _variables(self) -> Iterator[tuple[str, list[str], str]]:
        """(variable as spelled, path parts, text) of each variable with the prefix."""
        prefix = self.env_prefix.lower()
        spelled = {name.lower(): name for name in self._environ}
        for name in sorted(self.env_vars):
            text = self.env_vars[name]
            if not name.startswith(prefix) or text is None:
                continue
            parts = [p for p in name[len(prefix) :].split(self.env_nested_delimiter or "") if p]
            if parts:
                yield spelled.get(name, name.upper()), parts, text

    def _top_key(self, part: str) -> str | None:
        """The key a variable's first part sets (as the configuration spells it, else as the
        field is named); None when the model ignores it."""
        wanted = normalize_key(part)
        spelled = next((str(k) for k in self._base if normalize_key(str(k)) == wanted), None)
        for name, info in self.settings_cls.model_fields.items():
            spellings = {name, info.alias or name}
            if isinstance(info.validation_alias, str):
                spellings.add(info.validation_alias)
            if wanted in {normalize_key(s) for s in spellings}:
                return spelled or info.alias or name
        if self.config.get("extra") == "ignore":
            return None
        return spelled or part

    def __call__(self) -> dict[str, Any]:
        root = _copy(self._base)
        changed: set[str] = set()
        for variable, parts, text in self._variables():
            top = self._top_key(parts[0])
            if top is None:
                continue
            changed.add(top)
            path = _set_path(root, [top, *parts[1:]], _parse(text), (variable, text))
            self.origins[tuple(normalize_key(p) for p in path)] = (variable, text)
        return {key: root[key] for key in changed}

    def __repr__(self) -> str:
        return f"InfiniticEnvSource(prefix={self.env_prefix!r})"


def _parse(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def _set_path(root: dict[str, Any], parts: list[str], value: Any, origin: Origin) -> list[str]:
    """Set ``value`` at ``parts`` under ``root``; returns the path as set (keys as spelled in
    the configuration, list indices as text).

    Raises:
        ConfigurationError: a part stands for an item that is not in its list.
    """
    node: dict[str, Any] | list[Any] = root
    path: list[str] = []
    for i, part in enumerate(parts):
        if isinstance(node, list):
            index = _index(node, part, path, parts, origin)
            path.append(str(index))
            if i == len(parts) - 1:
                node[index] = value
                break
            if not isinstance(node[index], dict | list):
                node[index] = [] if parts[i + 1].isdigit() else {}
            node = node[index]
            continue
        key = next((k for k in node if normalize_key(str(k)) == normalize_key(part)), part)
        path.append(key)
        if i == len(parts) - 1:
            node[key] = value
            break
        if not isinstance(node.get(key), dict | list):
            node[key] = [] if parts[i + 1].isdigit() else {}  # an index: an item of no list
        node = node[key]
    return path


def _index(items: list[Any], part: str, path: list[str], parts: list[str], origin: Origin) -> int:
    if part.isdigit() and int(part) < len(items):
        return int(part)
    variable, text = origin
    expected = f"an index from 0 to {len(items) - 1}" if items else "none (the list is empty)"
    raise ConfigurationError(
        f"{variable}={_shown(parts, text)!r}: {'.'.join(path)} has no item {part!r}: "
        f"expected {expected}; declare the item in the file to set its keys"
    )


def _copy(data: Mapping[str, Any]) -> dict[str, Any]:
    return {k: _copy_value(v) for k, v in data.items()}


def _copy_value(value: Any) -> Any:
    if isinstance(value, Mapping):
        return _copy(value)
    if isinstance(value, list):
        return [_copy_value(v) for v in value]
    return value


# -- showing values in errors ------------------------------------------------------------

_SECRET_WORDS = ("password", "token", "secret", "privatekey", "authparams", "credentials")
_URL_PASSWORD = re.compile(r"(?P<head>[a-zA-Z][a-zA-Z0-9+.\-]*://[^:/@\s]*:)[^@/\s]+(?=@)")
_HIDDEN = "**********"


def _shown(path: list[str] | tuple[str, ...], value: Any) -> Any:
    """``value`` as an error may show it: hidden under a secret's key, without the password
    of a URL."""
    if any(word in normalize_key(str(p)) for p in path for word in _SECRET_WORDS):
        return _HIDDEN
    if isinstance(value, str):
        return _URL_PASSWORD.sub(lambda m: m.group("head") + _HIDDEN, value)
    return value


def _origin_of(
    loc: tuple[str, ...], message: str, origins: Mapping[tuple[str, ...], Origin]
) -> Origin | None:
    """The variable that set the key at ``loc``, one of its sub-keys, or a section holding it;
    for an error of the whole document, a variable whose key the message names."""
    wanted = tuple(normalize_key(p) for p in loc)
    if wanted in origins:
        return origins[wanted]
    if not wanted:
        text = normalize_key(message)
        return next((o for path, o in origins.items() if path and path[-1] in text), None)
    for path, origin in origins.items():
        if path[: len(wanted)] == wanted or wanted[: len(path)] == path:
            return origin
    return None


def describe_validation_error(
    error: ValidationError, origins: Mapping[tuple[str, ...], Origin] | None = None
) -> str:
    """Each problem of ``error``: the key, what was expected, the value given (a scalar, secrets
    hidden) and, when an environment variable set it, the variable."""
    problems = []
    for item in error.errors():
        loc = tuple(str(p) for p in item["loc"])
        message = item["msg"].removeprefix("Value error, ")
        text = f"{'.'.join(loc) or '(top level)'}: {message}"
        given = item.get("input")
        if item["type"] != "missing" and (given is None or isinstance(given, str | int | float)):
            text += f", got {_shown(loc, given)!r}"
        origin = _origin_of(loc, message, origins or {})
        if origin is not None:
            variable, raw = origin
            text += f" (from {variable}={_shown([variable], raw)!r})"
        problems.append(text)
    return "; ".join(problems)


# -- the settings models ---------------------------------------------------------------------


@dataclass
class _Reading:
    environ: Mapping[str, str] | None
    origins: dict[tuple[str, ...], Origin] = field(default_factory=dict)


_READING: ContextVar[_Reading | None] = ContextVar("infinitic_config_reading", default=None)


class InfiniticSettings(BaseSettings):
    """A configuration document: the values it is built with (YAML files), under the
    ``INFINITIC__...`` environment variables (see the module documentation).

    Build one with :meth:`read` (errors as :class:`ConfigurationError`, a chosen environment)
    or directly (``os.environ``, pydantic's ``ValidationError``). Keys are accepted in
    camelCase and snake_case.
    """

    model_config = SettingsConfigDict(alias_generator=to_camel, populate_by_name=True, frozen=True)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        reading = _READING.get()
        base: Mapping[str, Any] = getattr(init_settings, "init_kwargs", {})
        environ = None if reading is None else reading.environ
        env = InfiniticEnvSource(settings_cls, base, environ=environ)
        if reading is not None:
            reading.origins = env.origins  # filled when pydantic-settings calls the source
        return (env, init_settings)  # the first wins

    @classmethod
    def read(
        cls,
        data: Mapping[str, Any],
        *,
        environ: Mapping[str, str] | None = None,
        where: str = "",
    ) -> Self:
        """Validate ``data`` with the ``INFINITIC__...`` variables of ``environ`` (default
        ``os.environ``) over it.

        Args:
            data: the configuration's values (a YAML file's).
            environ: the environment variables.
            where: where ``data`` comes from, for error messages (e.g. `` in infinitic.yml``).

        Raises:
            ConfigurationError: a key is unknown or invalid, or a variable names an item that
                is not in its list; the message names the key, the value, what was expected
                and the variable that set it.
        """
        reading = _Reading(environ)
        token = _READING.set(reading)
        try:
            return cls(**data)
        except ValidationError as e:
            problems = describe_validation_error(e, reading.origins)
            raise ConfigurationError(f"invalid configuration{where}: {problems}") from e
        except (TypeError, ConfigurationError) as e:  # keys that are not strings; a variable
            raise ConfigurationError(f"invalid configuration{where}: {e}") from e
        finally:
            _READING.reset(token)


class _AnyDocument(InfiniticSettings):
    """Any configuration: every variable sets a key."""

    model_config = SettingsConfigDict(extra="allow")


def apply_env_overrides(
    data: Mapping[str, Any], *, prefix: str = ENV_PREFIX, environ: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """Return a copy of ``data`` with the keys set by environment variables (as
    :class:`InfiniticEnvSource` sets them, for any key: nothing is validated).

    Raises:
        ConfigurationError: a variable names an item that is not in its list.
    """
    out = _copy(data)
    out.update(InfiniticEnvSource(_AnyDocument, data, environ=environ, prefix=prefix)())
    return out
