"""JSON-path style filters on signal contents, parsed and evaluated without eval.

Grammar::

    filter     := or
    or         := and ("||" and)*
    and        := unary ("&&" unary)*
    unary      := "!" unary | "(" or ")" | comparison
    comparison := operand (("==" | "!=" | "<" | "<=" | ">" | ">=") operand)?
    operand    := path | number | 'string' | "string" | true | false | null
    path       := "$" ("." name | "[" integer "]" | "[" string "]")*

A lone path is true when it exists and is truthy. A path that does not exist compares as null.
Ordering comparisons between values of different kinds are false.

Example: ``$.amount > 100 && $.currency == "EUR"``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import lru_cache
from typing import Any

_TOKEN = re.compile(
    r"\s*(?:(?P<num>-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)|(?P<str>\"(?:[^\"\\]|\\.)*\"|'(?:[^'\\]|\\.)*')"
    r"|(?P<op>==|!=|<=|>=|&&|\|\||[<>!()\[\].$])|(?P<name>[A-Za-z_][A-Za-z0-9_\-]*))"
)

_MISSING = object()
Predicate = Callable[[Any], bool]


class FilterSyntaxError(ValueError):
    """A filter expression cannot be parsed."""


def _tokens(text: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    pos = 0
    text = text.rstrip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None or m.end() == pos:
            raise FilterSyntaxError(f"invalid filter {text!r}: unexpected {text[pos : pos + 10]!r}")
        kind = m.lastgroup or ""
        out.append((kind, m.group(kind)))
        pos = m.end()
    return out


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = _tokens(text)
        self.i = 0

    def fail(self, what: str) -> FilterSyntaxError:
        return FilterSyntaxError(f"invalid filter {self.text!r}: {what}")

    def peek(self) -> str | None:
        return self.tokens[self.i][1] if self.i < len(self.tokens) else None

    def take(self) -> tuple[str, str]:
        if self.i >= len(self.tokens):
            raise self.fail("unexpected end")
        tok = self.tokens[self.i]
        self.i += 1
        return tok

    def expect(self, value: str) -> None:
        _, got = self.take()
        if got != value:
            raise self.fail(f"expected {value!r}, got {got!r}")

    def parse(self) -> Predicate:
        pred = self.or_()
        if self.i != len(self.tokens):
            raise self.fail(f"unexpected {self.peek()!r}")
        return pred

    def or_(self) -> Predicate:
        parts = [self.and_()]
        while self.peek() == "||":
            self.take()
            parts.append(self.and_())
        return parts[0] if len(parts) == 1 else (lambda v: any(p(v) for p in parts))

    def and_(self) -> Predicate:
        parts = [self.unary()]
        while self.peek() == "&&":
            self.take()
            parts.append(self.unary())
        return parts[0] if len(parts) == 1 else (lambda v: all(p(v) for p in parts))

    def unary(self) -> Predicate:
        if self.peek() == "!":
            self.take()
            inner = self.unary()
            return lambda v: not inner(v)
        if self.peek() == "(":
            self.take()
            inner = self.or_()
            self.expect(")")
            return inner
        return self.comparison()

    def comparison(self) -> Predicate:
        left = self.operand()
        op = self.peek()
        if op not in ("==", "!=", "<", "<=", ">", ">="):
            return lambda v: _truthy(left(v))
        self.take()
        right = self.operand()
        return lambda v: _compare(left(v), op, right(v))

    def operand(self) -> Callable[[Any], Any]:
        kind, tok = self.take()
        if kind == "num":
            number = float(tok) if any(c in tok for c in ".eE") else int(tok)
            return lambda v: number
        if kind == "str":
            text = _unquote(tok)
            return lambda v: text
        if kind == "name" and tok in ("true", "false", "null"):
            const = {"true": True, "false": False, "null": None}[tok]
            return lambda v: const
        if tok == "$":
            return self.path()
        raise self.fail(f"expected a path ($...) or a literal, got {tok!r}")

    def path(self) -> Callable[[Any], Any]:
        steps: list[str | int] = []
        while self.peek() in (".", "["):
            if self.take()[1] == ".":
                kind, name = self.take()
                if kind != "name":
                    raise self.fail(f"expected a field name after '.', got {name!r}")
                steps.append(name)
            else:
                kind, tok = self.take()
                if kind == "num" and tok.lstrip("-").isdigit():
                    steps.append(int(tok))
                elif kind == "str":
                    steps.append(_unquote(tok))
                else:
                    raise self.fail(f"expected an index or a quoted key in [], got {tok!r}")
                self.expect("]")
        return lambda v: _walk(v, steps)


def _unquote(tok: str) -> str:
    return re.sub(r"\\(.)", r"\1", tok[1:-1])


def _walk(value: Any, steps: list[str | int]) -> Any:
    for step in steps:
        if isinstance(step, int):
            if not (isinstance(value, list) and -len(value) <= step < len(value)):
                return _MISSING
            value = value[step]
        elif isinstance(value, dict) and step in value:
            value = value[step]
        else:
            return _MISSING
    return value


def _truthy(value: Any) -> bool:
    return value is not _MISSING and bool(value)


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    return type(value).__name__


def _compare(left: Any, op: str, right: Any) -> bool:
    left = None if left is _MISSING else left
    right = None if right is _MISSING else right
    if op == "==":
        return bool(_kind(left) == _kind(right) and left == right)
    if op == "!=":
        return not (_kind(left) == _kind(right) and left == right)
    if _kind(left) != _kind(right) or left is None:
        return False
    try:
        return bool(
            {"<": left < right, "<=": left <= right, ">": left > right, ">=": left >= right}[op]
        )
    except TypeError:
        return False


@lru_cache(maxsize=1024)
def compile_filter(text: str) -> Predicate:
    """Compile a filter expression into a predicate on JSON-compatible values.

    Raises:
        FilterSyntaxError: the expression is invalid (the message shows where).
    """
    if not text.strip():
        raise FilterSyntaxError("empty filter")
    return _Parser(text).parse()
