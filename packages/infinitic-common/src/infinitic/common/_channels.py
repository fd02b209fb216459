"""Channels: typed signal inboxes declared on workflows.

A workflow declares ``approvals = Channel[Approval]()``; clients and other workflows send values
to an instance's channel; workflow code receives them with ``self.approvals.receive(...)``.
Receiving starts when ``receive`` is called; a signal sent while nothing receives it on that
channel is discarded.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Generator
from functools import cached_property
from typing import Any, Generic, TypeVar

from pydantic import TypeAdapter, ValidationError

from infinitic.common._errors import InvalidPayloadError
from infinitic.common._json_filter import compile_filter
from infinitic.common._workflow_api import HasStatus, current_runtime

T = TypeVar("T")


def type_names(value: Any) -> list[str]:
    """The class names a signal value can be filtered by (its class and its bases)."""
    return [c.__qualname__ for c in type(value).__mro__ if c is not object]


class Channel(Generic[T]):
    """A channel of a workflow, declared as a class attribute: ``events = Channel[Event]()``."""

    def __init__(self) -> None:
        self.name = ""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    @cached_property
    def value_type(self) -> Any:
        orig = getattr(self, "__orig_class__", None)
        args = getattr(orig, "__args__", ())
        return args[0] if args else Any

    @cached_property
    def adapter(self) -> TypeAdapter[Any]:
        return TypeAdapter(self.value_type)

    def dump(self, value: Any, where: str) -> Any:
        """Check ``value`` against the channel's type and dump it."""
        try:
            checked = self.adapter.validate_python(value)
        except ValidationError as e:
            raise InvalidPayloadError(f"{where}, channel {self.name!r}: {e}") from None
        return self.adapter.dump_python(checked, mode="json")

    def load(self, data: Any) -> T:
        return self.adapter.validate_python(data)  # type: ignore[no-any-return]

    def receive(
        self, *, limit: int | None = None, type: type | None = None, filter: str | None = None
    ) -> Receiving[T]:
        """Start receiving signals on this channel (only inside workflow code).

        Args:
            limit: how many signals to receive (None: no limit).
            type: only signals of this class (or a subclass) are received.
            filter: a JSON-path style condition on the signal, e.g. ``$.amount > 100``.

        Returns:
            A Receiving: each ``await`` gives the next received signal.
        """
        if limit is not None and limit < 1:
            raise ValueError(f"receive limit must be >= 1, got {limit}")
        if filter is not None:
            compile_filter(filter)  # a syntax error is raised here, in the workflow code
        rt = current_runtime(f"receiving on channel {self.name!r}")
        receiving: Receiving[T] = rt.new_receive(
            self, limit, type.__qualname__ if type else None, filter
        )
        return receiving

    def __repr__(self) -> str:
        return f"<Channel {self.name}>"


class Receiving(HasStatus, Generic[T]):
    """Signals received by a ``receive`` command: each ``await`` gives the next one, in the order
    they were accepted by the workflow.

    ``status`` is ``completed`` while a received signal waits to be awaited, ``ongoing`` once
    awaits have taken them all (more may come). With a ``limit``, once that many signals have
    come and been taken, the receive is over: it stays ``completed`` and each further ``await``
    gives the last signal again (as in Infinitic since 0.16.1).
    """

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        id: str,
        channel: Channel[T],
        limit: int | None = None,
    ) -> None:
        self._loop = loop
        self.id = id
        self._channel = channel
        self._limit = limit
        self._received = 0
        self._last: list[T] = []  # the last signal received, once there is one
        self._buffer: deque[T] = deque()
        self._waiters: deque[asyncio.Future[T]] = deque()

    def _over(self) -> bool:
        return self._limit is not None and self._received >= self._limit and not self._buffer

    @property
    def status(self) -> str:
        """``completed`` when an ``await`` would give a signal at once, else ``ongoing``."""
        return "completed" if self._buffer or self._over() else "ongoing"

    def push(self, data: Any) -> None:
        """Hand a received signal over (used by the runtime)."""
        value = self._channel.load(data)
        self._received += 1
        self._last = [value]
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(value)
                break
        else:
            self._buffer.append(value)
        if self._over():  # the limit is reached: whoever still waits gets the last one
            while self._waiters:
                waiter = self._waiters.popleft()
                if not waiter.done():
                    waiter.set_result(value)

    def __await__(self) -> Generator[Any, None, T]:
        future: asyncio.Future[T] = self._loop.create_future()
        if self._buffer:
            future.set_result(self._buffer.popleft())
        elif self._over():
            future.set_result(self._last[0])
        else:
            self._waiters.append(future)
        return future.__await__()

    def __repr__(self) -> str:
        return f"<Receiving {self._channel.name} {self.status} buffered={len(self._buffer)}>"
