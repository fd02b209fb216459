"""Infinitic for Python: key-value and key-set storage.

In-memory storage is always available; Redis, PostgreSQL and MySQL backends come with the
``redis``, ``postgres`` and ``mysql`` extras.
"""

from infinitic.storage._in_memory import (
    InMemoryKeySetStorage,
    InMemoryKeyValueStorage,
    InMemoryStorage,
)
from infinitic.storage._interfaces import (
    KeySetPage,
    KeySetStorage,
    KeyValueStorage,
    Storage,
    VersionedValue,
)

__all__ = [
    "InMemoryKeySetStorage",
    "InMemoryKeyValueStorage",
    "InMemoryStorage",
    "KeySetPage",
    "KeySetStorage",
    "KeyValueStorage",
    "Storage",
    "VersionedValue",
]
