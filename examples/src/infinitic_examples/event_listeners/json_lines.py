"""An event listener appending each CloudEvent as one JSON line to a file."""

from __future__ import annotations

import os
from pathlib import Path

from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.v1.event import CloudEvent

_FORMAT = JSONFormat()


class JsonLinesWriter:
    """Appends events to ``path`` (default: ``$INFINITIC_EVENTS_FILE``, else ``events.jsonl``),
    one CloudEvent in its JSON format per line.

    A sync listener: the worker runs it in a thread. A batch is written with one ``write`` and
    flushed before the call returns, so its messages are acknowledged only once on disk; a
    batch delivered again (at least once) is written again: readers de-duplicate by ``id``.
    """

    def __init__(self, path: str | os.PathLike[str] | None = None) -> None:
        self.path = Path(path or os.environ.get("INFINITIC_EVENTS_FILE", "events.jsonl"))

    def __call__(self, events: list[CloudEvent]) -> None:
        lines = b"".join(_FORMAT.write(e) + b"\n" for e in events)
        with self.path.open("ab") as f:
            f.write(lines)
            f.flush()
            os.fsync(f.fileno())
