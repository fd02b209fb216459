"""msgpack encoding of JSON-compatible values (plus bytes), with clear errors."""

from __future__ import annotations

from typing import Any

import msgpack

from infinitic.common._errors import MessageDecodeError


def pack(value: Any) -> bytes:
    """Encode a msgpack-compatible value (dicts, lists, str, int, float, bool, None, bytes)."""
    return msgpack.packb(value, use_bin_type=True, datetime=False)  # type: ignore[no-any-return]


def map_header(size: int) -> bytes:
    """The msgpack header of a map of ``size`` pairs: followed by the packed keys and values, it
    makes the same bytes as :func:`pack` of the map (so packed parts can be reused)."""
    return _HEADERS.pack_map_header(size)  # type: ignore[no-any-return]


def array_header(size: int) -> bytes:
    """The msgpack header of an array of ``size`` items (see :func:`map_header`)."""
    return _HEADERS.pack_array_header(size)  # type: ignore[no-any-return]


_HEADERS = msgpack.Packer(use_bin_type=True, datetime=False, autoreset=True)


def unpack(data: bytes) -> Any:
    """Decode bytes written by :func:`pack`; raises :class:`MessageDecodeError` on garbage."""
    try:
        return msgpack.unpackb(data, raw=False, strict_map_key=False)
    except Exception as e:  # msgpack raises several unrelated exception types
        raise MessageDecodeError(f"not a msgpack value ({type(e).__name__}: {e})") from e
