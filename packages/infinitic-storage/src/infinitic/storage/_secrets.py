"""Secrets in storage settings: kept out of reprs, log lines and error messages.

Passwords are held as :class:`pydantic.SecretStr` (shown as ``'**********'``); a URL is shown
with its password, and any ``password`` query parameter, replaced by ``***``; error messages
built by the backends pass through :func:`redact` with the settings' secrets, in case a driver
echoes one back.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

from pydantic import SecretStr

MASK = "***"
_SECRET_QUERY_KEYS = frozenset({"password", "sslpassword"})


def secret(value: SecretStr | str | None) -> SecretStr | None:
    """``value`` as a SecretStr (None stays None)."""
    if value is None or isinstance(value, SecretStr):
        return value
    return SecretStr(value)


def reveal(value: SecretStr | str | None) -> str | None:
    """The clear text of ``value``, for the driver only."""
    if isinstance(value, SecretStr):
        return value.get_secret_value()
    return value


def url_password(url: str | None) -> str | None:
    """The password written in ``url`` (user info or a ``password`` query parameter)."""
    if not url:
        return None
    try:
        parts = urlsplit(url)
        if parts.password:
            return parts.password
        for key, value in parse_qsl(parts.query):
            if key.lower() in _SECRET_QUERY_KEYS and value:
                return value
    except ValueError:
        return None
    return None


def redact_url(url: str) -> str:
    """``url`` with its password (user info and query parameter) replaced by ``***``."""
    try:
        parts = urlsplit(url)
        netloc = parts.netloc
        if parts.password is not None:
            userinfo, _, hostinfo = netloc.rpartition("@")
            user = userinfo.partition(":")[0]
            netloc = f"{user}:{MASK}@{hostinfo}"
        query = parts.query
        pairs = parse_qsl(query, keep_blank_values=True)
        if any(k.lower() in _SECRET_QUERY_KEYS for k, _ in pairs):
            masked = [(k, MASK if k.lower() in _SECRET_QUERY_KEYS else v) for k, v in pairs]
            query = urlencode(masked, safe="*", quote_via=quote)
        return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))
    except ValueError:
        # Not parsable: nothing of it can be shown safely.
        return f"<unparsable URL, {MASK}>"


def redact(text: str, secrets: Iterable[str | None]) -> str:
    """``text`` with every occurrence of each non-empty secret replaced by ``***``."""
    for value in secrets:
        if value:
            text = text.replace(value, MASK)
    return text


def settings_repr(settings: Any) -> str:
    """The repr of a settings dataclass, its ``url`` redacted (passwords are SecretStr)."""
    shown: list[str] = []
    for f in dataclasses.fields(settings):
        if not f.repr:
            continue
        value = getattr(settings, f.name)
        if f.name == "url" and isinstance(value, str):
            shown.append(f"url={redact_url(value)!r}")
        else:
            shown.append(f"{f.name}={value!r}")
    return f"{type(settings).__name__}({', '.join(shown)})"
