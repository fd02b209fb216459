"""The backlog of an in-memory topic nobody subscribed to yet, bounded in messages and bytes.

The events topics, which only an event listener reads, would otherwise grow for as long as the
process runs. A bound in messages alone is no bound on memory: 100,000 messages of the 5 MB a
message may weigh are 500 GB. So a backlog keeps its newest messages within both bounds, and
drops the oldest past either; the newest message is always kept, whatever its size.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator

from infinitic.transport._interfaces import TransportMessage

#: Messages kept for a topic without subscribers (see ``InMemoryTransport``).
DEFAULT_MAX_BACKLOG = 100_000
#: Bytes kept for a topic without subscribers (see ``InMemoryTransport``).
DEFAULT_MAX_BACKLOG_BYTES = 64 * 1024 * 1024


def message_bytes(message: TransportMessage) -> int:
    """The bytes ``message`` holds, near enough for a budget: payload, key and properties."""
    size = len(message.data) + len(message.key or "")
    for name, value in message.properties.items():
        size += len(name) + len(value)
    return size


class Backlog:
    """The messages of one topic kept for its first subscriber, oldest first.

    Args:
        max_messages: the most messages kept.
        max_bytes: the most bytes kept (:func:`message_bytes`).
    """

    def __init__(self, max_messages: int, max_bytes: int) -> None:
        self.max_messages = max_messages
        self.max_bytes = max_bytes
        self.bytes = 0
        self._messages: deque[tuple[TransportMessage, int]] = deque()

    def __len__(self) -> int:
        return len(self._messages)

    def __iter__(self) -> Iterator[TransportMessage]:
        return (message for message, _ in self._messages)

    def append(self, message: TransportMessage) -> str | None:
        """Keep ``message``, dropping the oldest past a bound; return the bound that dropped
        messages (``"max_backlog"`` or ``"max_backlog_bytes"``), None when none was."""
        size = message_bytes(message)
        self._messages.append((message, size))
        self.bytes += size
        bound = None
        while len(self._messages) > 1 and (
            len(self._messages) > self.max_messages or self.bytes > self.max_bytes
        ):
            bound = (
                "max_backlog" if len(self._messages) > self.max_messages else "max_backlog_bytes"
            )
            _, dropped = self._messages.popleft()
            self.bytes -= dropped
        return bound
