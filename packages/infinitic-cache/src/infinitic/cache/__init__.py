"""Infinitic for Python: caches in front of storage.

:class:`LRUCache` is a plain least-recently-used cache with a size bound and an optional expiry.
:class:`CachedKeyValueStorage`, :class:`CachedKeySetStorage` and :class:`CachedStorage` put such
caches in front of any :mod:`infinitic.storage` backend; writes always go through to the backend,
so compare-and-set stays decided by the backend (see each class for what is safe with several
workers).
"""

import importlib.metadata

from infinitic.cache._cached_key_set import CachedKeySetStorage, CachedStorage, KeySetCacheEntry
from infinitic.cache._cached_key_value import CachedKeyValueStorage
from infinitic.cache._lru import CacheStats, LRUCache

__version__: str = importlib.metadata.version("infinitic-cache")

__all__ = [
    "CacheStats",
    "CachedKeySetStorage",
    "CachedKeyValueStorage",
    "CachedStorage",
    "KeySetCacheEntry",
    "LRUCache",
]
