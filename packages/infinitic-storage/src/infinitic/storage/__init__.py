"""Infinitic for Python: key-value and key-set storage.

In-memory storage is always available; Redis, PostgreSQL and MySQL backends come with the
``redis``, ``postgres`` and ``mysql`` extras, zstd compression with the ``zstd`` extra. A backend's
driver is imported when one of its names is first used, so a missing driver raises an ImportError
telling what to install.
"""

from __future__ import annotations

import importlib.metadata
from importlib import import_module
from typing import TYPE_CHECKING, Any

from infinitic.storage._compression import CompressedKeyValueStorage, Compression
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

if TYPE_CHECKING:
    from infinitic.storage._mysql import (
        MySQLKeySetStorage,
        MySQLKeyValueStorage,
        MySQLSettings,
        MySQLStorage,
    )
    from infinitic.storage._postgres import (
        PostgresKeySetStorage,
        PostgresKeyValueStorage,
        PostgresSettings,
        PostgresStorage,
    )
    from infinitic.storage._redis import (
        RedisKeySetStorage,
        RedisKeyValueStorage,
        RedisSettings,
        RedisStorage,
    )

_LAZY = {
    "RedisKeySetStorage": "_redis",
    "RedisKeyValueStorage": "_redis",
    "RedisSettings": "_redis",
    "RedisStorage": "_redis",
    "PostgresKeySetStorage": "_postgres",
    "PostgresKeyValueStorage": "_postgres",
    "PostgresSettings": "_postgres",
    "PostgresStorage": "_postgres",
    "MySQLKeySetStorage": "_mysql",
    "MySQLKeyValueStorage": "_mysql",
    "MySQLSettings": "_mysql",
    "MySQLStorage": "_mysql",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


__version__: str = importlib.metadata.version("infinitic-storage")

__all__ = [
    "CompressedKeyValueStorage",
    "Compression",
    "InMemoryKeySetStorage",
    "InMemoryKeyValueStorage",
    "InMemoryStorage",
    "KeySetPage",
    "KeySetStorage",
    "KeyValueStorage",
    "MySQLKeySetStorage",
    "MySQLKeyValueStorage",
    "MySQLSettings",
    "MySQLStorage",
    "PostgresKeySetStorage",
    "PostgresKeyValueStorage",
    "PostgresSettings",
    "PostgresStorage",
    "RedisKeySetStorage",
    "RedisKeyValueStorage",
    "RedisSettings",
    "RedisStorage",
    "Storage",
    "VersionedValue",
]
