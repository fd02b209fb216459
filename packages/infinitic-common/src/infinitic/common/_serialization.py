"""msgpack encoding of JSON-compatible values (plus bytes), with clear errors."""

from __future__ import annotations

import threading
from typing import Any

import msgpack

from infinitic.common._errors import InvalidPayloadError, MessageDecodeError

# What msgpack refuses to encode, or what it raises on (several unrelated types).
_ENCODE_ERRORS = (OverflowError, UnicodeError, TypeError, ValueError)
_INT_MIN, _INT_MAX = -(2**63), 2**64 - 1
# msgpack's own limit of nested containers (its DEFAULT_RECURSE_LIMIT).
_MAX_DEPTH = 1024


def _packer() -> msgpack.Packer:
    return msgpack.Packer(use_bin_type=True, datetime=False, autoreset=True)


#: A packer's buffer grows to the largest value it packed and never shrinks: one that packed
#: more than this is dropped (its buffer freed) rather than kept. msgpack starts a packer's
#: buffer at 1 MiB.
_KEPT_PACKER_BYTES = 2**20


class _Packers(threading.local):
    """Each thread's idle packers. ``msgpack.packb`` makes a packer (and its buffer) per call,
    which costs three times the packing of a small message; a packer is reused instead, taken
    out while it packs, so a pack that runs Python code which packs (a mapping subclass's
    ``items``) gets another one. A pack that fails drops its packer."""

    def __init__(self) -> None:
        self.idle = [_packer()]


_PACKERS = _Packers()


def _packb(value: Any) -> bytes:
    idle = _PACKERS.idle
    packer = idle.pop() if idle else _packer()
    data: bytes = packer.pack(value)  # raising, the packer is dropped (rare: bad payloads)
    if len(data) <= _KEPT_PACKER_BYTES:
        idle.append(packer)
    return data


def pack(value: Any) -> bytes:
    """Encode a msgpack-compatible value (dicts, lists, str, int, float, bool, None, bytes).

    Raises:
        InvalidPayloadError: a part of ``value`` cannot be encoded (an integer beyond 64 bits, a
            string with a lone surrogate, an unsupported type, nesting past 1024 levels); the
            message says where (``[0]['items'][3]``) and why.
    """
    try:
        return _packb(value)
    except _ENCODE_ERRORS as e:
        raise InvalidPayloadError(f"cannot encode {unpackable(value) or _error(e)}") from None


def try_pack(value: Any) -> tuple[bytes, None] | tuple[None, str]:
    """``(bytes, None)`` as :func:`pack` encodes ``value``, or ``(None, why)`` saying why it
    cannot and where in it."""
    try:
        return _packb(value), None
    except _ENCODE_ERRORS as e:
        return None, unpackable(value) or _error(e)


def encoding_problem(value: Any) -> str | None:
    """Why ``value`` cannot be encoded by :func:`pack`, and where in it; None if it can.

    Costs one encoding when it can (the bytes are dropped).
    """
    return try_pack(value)[1]


def _error(e: BaseException) -> str:
    return f"the value ({type(e).__name__}: {e})"


def _describe_text(text: str) -> str | None:
    try:
        text.encode()
    except UnicodeEncodeError as e:
        return (
            f"a string with the lone surrogate {text[e.start]!r} at index {e.start} "
            "(not valid Unicode text; send bytes instead)"
        )
    return None


def _describe_scalar(value: Any) -> str | None:
    """Why a non-container cannot be encoded, or None."""
    if value is None or isinstance(value, bool | float | bytes | bytearray | memoryview):
        return None
    if isinstance(value, int):
        if _INT_MIN <= value <= _INT_MAX:
            return None
        return (
            f"the integer {value} (beyond 64 bits: from -2**63 to 2**64-1; "
            "send it as a string or split it)"
        )
    if isinstance(value, str):
        return _describe_text(value)
    return f"a value of type {type(value).__name__} (not a msgpack type)"


def unpackable(value: Any) -> str | None:
    """The first part of ``value`` :func:`pack` cannot encode, as ``<where>: <what>``, or None.

    ``<where>`` is the path from ``value`` (``[2]['name']``); empty at the top.
    """
    stack: list[tuple[Any, str, int]] = [(value, "", 0)]
    while stack:
        item, path, depth = stack.pop()
        if isinstance(item, list | tuple | dict) and depth > _MAX_DEPTH:
            return f"{path or 'the value'}: containers nested deeper than {_MAX_DEPTH} levels"
        if isinstance(item, dict):
            children: list[tuple[Any, str, int]] = []
            for key, child in item.items():
                problem = _describe_scalar(key)
                if problem is not None:
                    return f"{path + ' ' if path else ''}key {key!r}: {problem}"
                children.append((child, f"{path}[{key!r}]", depth + 1))
            stack.extend(reversed(children))
        elif isinstance(item, list | tuple):
            stack.extend(
                (child, f"{path}[{i}]", depth + 1) for i, child in reversed(list(enumerate(item)))
            )
        else:
            problem = _describe_scalar(item)
            if problem is not None:
                return f"{path}: {problem}" if path else problem
    return None


def map_header(size: int) -> bytes:
    """The msgpack header of a map of ``size`` pairs: followed by the packed keys and values, it
    makes the same bytes as :func:`pack` of the map (so packed parts can be reused)."""
    return _HEADERS.pack_map_header(size)  # type: ignore[no-any-return]


def array_header(size: int) -> bytes:
    """The msgpack header of an array of ``size`` items (see :func:`map_header`)."""
    return _HEADERS.pack_array_header(size)  # type: ignore[no-any-return]


_HEADERS = _packer()


def unpack(data: bytes) -> Any:
    """Decode bytes written by :func:`pack`; raises :class:`MessageDecodeError` on garbage."""
    try:
        return msgpack.unpackb(data, raw=False, strict_map_key=False)
    except Exception as e:  # msgpack raises several unrelated exception types
        raise MessageDecodeError(f"not a msgpack value ({type(e).__name__}: {e})") from e
