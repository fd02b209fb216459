"""Deferreds stay in the workflow method that created them.

A Deferred belongs to the method run whose code created its command: kept in a property, it
would be awaited by another method run (whose history never recorded its result) or survive
into a later instance rebuilt by replay, where it is another object. Infinitic refuses it; so
does this runtime, after each step, with an error naming the property (arguments are refused
where they are serialized: a Deferred is not a value).
"""

from __future__ import annotations

import asyncio
from typing import Any

from infinitic.exceptions import InfiniticError

#: How deep containers held by properties are searched (a list of dicts of lists ...).
_MAX_DEPTH = 4


def _find(value: Any, path: str, depth: int) -> str | None:
    if isinstance(value, asyncio.Future):
        return path
    if depth >= _MAX_DEPTH:
        return None
    if isinstance(value, dict):
        for key, item in value.items():
            found = _find(item, f"{path}[{key!r}]", depth + 1)
            if found is not None:
                return found
    elif isinstance(value, list | tuple | set | frozenset):
        for index, item in enumerate(value):
            found = _find(item, f"{path}[{index}]", depth + 1)
            if found is not None:
                return found
    return None


def check_no_deferred_in_properties(workflow_name: str, instance: object) -> None:
    """Raise if a property of ``instance`` (or a list, tuple, set or dict it holds) keeps a
    Deferred, or any other future of the workflow's loop.

    Raises:
        InfiniticError: names the workflow and the property; fails the workflow task.
    """
    try:
        properties = vars(instance)
    except TypeError:  # __slots__ only
        return
    for name, value in properties.items():
        if name.startswith("_infinitic"):
            continue
        where = _find(value, name, 0)
        if where is not None:
            raise InfiniticError(
                f"workflow {workflow_name}: property {where!r} holds a Deferred; a Deferred "
                "stays in the workflow method that created it (await it there and keep its "
                "result instead)"
            )
