"""Payload conversion from the type hints of a service or workflow interface.

Arguments and return values travel as JSON-compatible values. Each method gets pydantic
TypeAdapters built from its hints, so pydantic models, dataclasses, enums, datetimes, UUIDs,
lists, dicts and Optional round-trip, and a value that does not fit its declared type, or that
cannot be encoded (an integer beyond 64 bits, a string with a lone surrogate, bytes that are not
UTF-8 text), is refused with an error naming the entity, the method and the parameter.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import inspect
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any

from pydantic import BaseModel, TypeAdapter, ValidationError

from infinitic.common._errors import InvalidPayloadError, UnknownMethodError
from infinitic.common._serialization import encoding_problem, try_pack

# U+FFFD in UTF-8: pydantic's JSON dump puts it in place of a lone surrogate in a dict key.
_REPLACEMENT = "\ufffd".encode()


def _describe(e: ValidationError) -> str:
    parts = []
    for item in e.errors():
        loc = ".".join(str(p) for p in item.get("loc", ()))
        parts.append(f"{loc + ': ' if loc else ''}{item.get('msg')} (got {item.get('input')!r})")
    return "; ".join(parts)


#: Types whose values validate and dump to themselves: a value of exactly one of them (not a
#: subclass, so no bool for an int) skips its adapter (a third of a workflow task's CPU was
#: checking and dumping its arguments). Not float: a JSON dump turns inf and nan into None.
_SELF_DUMPED = (str, int, bool)


@dataclass(frozen=True)
class _Param:
    name: str
    adapter: TypeAdapter[Any]
    hint: Any
    kind: inspect._ParameterKind
    default: Any
    exact: type | None = None  # the hint, when it is one of _SELF_DUMPED (no value's type is None)


@dataclass(frozen=True)
class MethodSignature:
    """The converter of one method: binds, validates, dumps and loads its payloads."""

    entity_kind: str  # "service" or "workflow"
    entity_name: str
    method_name: str
    params: tuple[_Param, ...]
    returns: TypeAdapter[Any]
    signature: inspect.Signature
    returns_exact: type | None = None  # the return hint, when it is one of _SELF_DUMPED
    returns_none: bool = False  # the return hint is None

    @functools.cached_property
    def _all_positional(self) -> bool:
        return all(
            p.kind in (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
            for p in self.params
        )

    def _where(self, param: str | None = None) -> str:
        where = f"{self.entity_kind} {self.entity_name}, method {self.method_name}"
        return f"{where}, parameter {param!r}" if param else where

    def _dump(self, adapter: TypeAdapter[Any], value: Any, param: str | None) -> Any:
        """``value`` dumped to JSON-compatible values; refused if it cannot be encoded
        (``param``: the parameter's name, None for the return value)."""
        # PydanticSerializationError and UnicodeDecodeError (bytes that are not UTF-8 text) are
        # both ValueErrors.
        try:
            return adapter.dump_python(value, mode="json")
        except ValueError as e:
            where = self._where(param) if param is not None else self._return_where()
            raise InvalidPayloadError(f"{where}: cannot be encoded: {e}") from None

    def _return_where(self) -> str:
        return f"{self._where()}, return value"

    def dump_args(self, args: Sequence[Any], kwargs: Mapping[str, Any]) -> list[Any]:
        """Bind a call's arguments, check each against its type and return them dumped.

        Raises:
            InvalidPayloadError: an argument is missing, unexpected, of the wrong type or cannot
                be encoded (an integer beyond 64 bits, a lone surrogate in a string, ...); the
                message names the entity, the method and the parameter.
        """
        values: Sequence[Any]
        if not kwargs and len(args) == len(self.params) and self._all_positional:
            values = args  # the usual call: every argument given by position, nothing to bind
        else:
            try:
                bound = self.signature.bind(None, *args, **kwargs)
            except TypeError as e:
                raise InvalidPayloadError(f"{self._where()}: {e}") from None
            bound.apply_defaults()
            values = [bound.arguments[param.name] for param in self.params]
        out: list[Any] = []
        for param, value in zip(self.params, values, strict=True):
            if type(value) is param.exact:
                out.append(value)  # checked for encoding with the others below
                continue
            try:
                checked = param.adapter.validate_python(value, strict=True)
            except ValidationError:
                try:  # strict mode refuses e.g. a dict for a dataclass: accept what lax accepts
                    checked = param.adapter.validate_python(value)
                except ValidationError as e:
                    raise InvalidPayloadError(
                        f"{self._where(param.name)}: {_describe(e)}"
                    ) from None
                if _coerced_primitive(value, checked):
                    raise InvalidPayloadError(
                        f"{self._where(param.name)}: expected {_type_name(param.hint)}, "
                        f"got {type(value).__name__} {value!r}"
                    ) from None
            out.append(self._dump(param.adapter, checked, param.name))
        packed, _ = try_pack(out)  # one encoding; the loops only on a failure or a U+FFFD
        if packed is None:
            for param, dumped in zip(self.params, out, strict=True):
                problem = encoding_problem(dumped)
                if problem is not None:
                    raise InvalidPayloadError(
                        f"{self._where(param.name)}: cannot be encoded: {problem}"
                    )
        elif _REPLACEMENT in packed:
            for param, value in zip(self.params, values, strict=True):
                self._refuse_lossy_keys(value, self._where(param.name))
        return out

    @staticmethod
    def _refuse_lossy_keys(value: Any, where: str) -> None:
        """Refuse a dict key holding a lone surrogate: pydantic's JSON dump would replace it
        with U+FFFD, silently."""
        problem = _lossy_key(value)
        if problem is not None:
            raise InvalidPayloadError(f"{where}: cannot be encoded: {problem}")

    def load_args(self, values: Sequence[Any]) -> list[Any]:
        """Turn received argument values back into the declared types.

        Raises:
            InvalidPayloadError: the values do not fit the declared types.
        """
        if len(values) != len(self.params):
            raise InvalidPayloadError(
                f"{self._where()}: expected {len(self.params)} arguments, got {len(values)}"
            )
        out = []
        for param, value in zip(self.params, values, strict=True):
            if type(value) is param.exact:
                out.append(value)
                continue
            try:
                out.append(param.adapter.validate_python(value))
            except ValidationError as e:
                raise InvalidPayloadError(f"{self._where(param.name)}: {_describe(e)}") from None
        return out

    def dump_result(self, value: Any) -> Any:
        """Check a return value against the declared return type and dump it.

        Raises:
            InvalidPayloadError: the value does not fit the type or cannot be encoded.
        """
        if value is None and self.returns_none:
            return None
        if type(value) is self.returns_exact:
            checked = dumped = value
        else:
            try:
                checked = self.returns.validate_python(value)
            except ValidationError as e:
                raise InvalidPayloadError(f"{self._return_where()}: {_describe(e)}") from None
            dumped = self._dump(self.returns, checked, None)
        packed, problem = try_pack(dumped)
        if packed is None:
            raise InvalidPayloadError(f"{self._return_where()}: cannot be encoded: {problem}")
        if _REPLACEMENT in packed:
            self._refuse_lossy_keys(checked, self._return_where())
        return dumped

    def load_result(self, value: Any) -> Any:
        """Turn a received return value back into the declared return type."""
        if value is None and self.returns_none:
            return None
        if type(value) is self.returns_exact:
            return value
        try:
            return self.returns.validate_python(value)
        except ValidationError as e:
            raise InvalidPayloadError(f"{self._where()}, return value: {_describe(e)}") from None


def _lossy_key(value: Any) -> str | None:
    """Where a dict key inside ``value`` (dicts, sequences, sets, pydantic models, dataclasses)
    holds a lone surrogate, as ``<where>: <what>``; None if none does."""
    stack: list[tuple[Any, str]] = [(value, "")]
    while stack:
        item, path = stack.pop()
        children: list[tuple[Any, str]] = []
        if isinstance(item, Mapping):
            for key, child in item.items():
                if isinstance(key, str):
                    try:
                        key.encode()
                    except UnicodeEncodeError as e:
                        return (
                            f"{path + ' ' if path else ''}key {key!r}: a string with the lone "
                            f"surrogate {key[e.start]!r} at index {e.start} (not valid Unicode "
                            "text)"
                        )
                children.append((child, f"{path}[{key!r}]"))
        elif isinstance(item, list | tuple | set | frozenset):
            children = [(child, f"{path}[{i}]") for i, child in enumerate(item)]
        elif isinstance(item, BaseModel):
            children = [(child, f"{path}.{name}") for name, child in vars(item).items()]
        elif dataclasses.is_dataclass(item) and not isinstance(item, type):
            children = [
                (getattr(item, f.name), f"{path}.{f.name}") for f in dataclasses.fields(item)
            ]
        stack.extend(reversed(children))
    return None


_PRIMITIVES = (str, bytes, int, float, bool)


def _coerced_primitive(value: Any, checked: Any) -> bool:
    """True when lax validation turned a primitive into another primitive (like "3" into 3):
    callers get an error rather than a silent conversion. Enums, datetimes, UUIDs... built from
    strings are accepted."""
    return (
        isinstance(value, _PRIMITIVES)
        and isinstance(checked, _PRIMITIVES)
        and not isinstance(checked, enum.Enum)
        and type(checked) is not type(value)
        and not (type(value) is int and type(checked) is float)
    )


def _type_name(hint: Any) -> str:
    return hint.__name__ if isinstance(hint, type) else str(hint).replace("typing.", "")


def _hints(fn: Any, owner: type) -> dict[str, Any]:
    try:
        return typing.get_type_hints(fn, include_extras=True)
    except Exception as e:
        raise InvalidPayloadError(
            f"cannot read the type hints of {owner.__name__}.{fn.__name__}: {e}"
        ) from e


@cache
def method_signature(
    owner: type, method_name: str, entity_kind: str, entity_name: str
) -> MethodSignature:
    """Return the converter of ``owner.method_name`` (cached).

    Raises:
        UnknownMethodError: ``owner`` has no such public method.
    """
    fn = inspect.getattr_static(owner, method_name, None)
    fn = getattr(fn, "__func__", fn)
    if method_name.startswith("_") or not callable(fn):
        raise UnknownMethodError(
            f"{entity_kind} {entity_name} has no method {method_name!r}"
            f" (its methods: {', '.join(public_methods(owner)) or 'none'})"
        )
    sig = inspect.signature(fn)
    hints = _hints(fn, owner)
    params = []
    for p in list(sig.parameters.values())[1:]:  # skip self
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            raise InvalidPayloadError(
                f"{entity_kind} {entity_name}, method {method_name}: *args and **kwargs are not "
                "supported in interfaces; declare each parameter"
            )
        hint = hints.get(p.name, Any)
        exact = hint if hint in _SELF_DUMPED else None
        params.append(_Param(p.name, TypeAdapter(hint), hint, p.kind, p.default, exact))
    ret = hints.get("return", Any)
    returns_none = ret is None or ret is type(None)
    return MethodSignature(
        entity_kind,
        entity_name,
        method_name,
        tuple(params),
        TypeAdapter(Any if returns_none else ret),
        sig,
        returns_exact=ret if ret in _SELF_DUMPED else None,
        returns_none=returns_none,
    )


def public_methods(owner: type) -> list[str]:
    """Return the names of the public methods of a class (its interface)."""
    names = []
    for klass in owner.__mro__:
        if klass is object or klass.__module__ in ("typing", "typing_extensions"):
            continue
        if klass.__module__.startswith("infinitic.common."):  # the Workflow base class
            continue
        for key, value in vars(klass).items():
            fn = getattr(value, "__func__", value)
            if not key.startswith("_") and inspect.isfunction(fn) and key not in names:
                names.append(key)
    return sorted(names)
