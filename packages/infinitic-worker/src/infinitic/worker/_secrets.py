"""Hiding secrets in configuration data and URLs before they are shown or logged."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

HIDDEN = "**********"

# Keys (lower case, without ``_`` or ``-``) whose values are secrets wherever they appear.
_SECRET_KEYS = ("password", "token", "secret", "privatekey", "authparams", "credentials")

_URL_PASSWORD = re.compile(r"(?P<head>[a-zA-Z][a-zA-Z0-9+.\-]*://[^:/@\s]*:)[^@/\s]+(?=@)")


def hide_url_password(url: str) -> str:
    """``redis://user:secret@host`` -> ``redis://user:**********@host`` (other text unchanged)."""
    return _URL_PASSWORD.sub(lambda m: m.group("head") + HIDDEN, url)


def _is_secret(key: str) -> bool:
    normalized = re.sub(r"[_\-]", "", key).lower()
    return any(word in normalized for word in _SECRET_KEYS)


def hide_secrets(data: Any) -> Any:
    """A copy of ``data`` (mappings, lists, scalars) with passwords, tokens and secrets
    replaced by ``**********``, and passwords inside URLs too."""
    if isinstance(data, Mapping):
        return {
            k: (HIDDEN if _is_secret(str(k)) and v is not None else hide_secrets(v))
            for k, v in data.items()
        }
    if isinstance(data, list):
        return [hide_secrets(v) for v in data]
    if isinstance(data, str):
        return hide_url_password(data)
    return data
