"""Values over a backend's limit are refused before anything is sent, with ValueTooLargeError
naming the backend, the key, the size and the limit (a StorageError that waiting does not heal;
sent anyway, the server drops the connection and every retry fails the same way). MySQL's limit
is the server's: half its max_allowed_packet (values travel as hexadecimal); Redis's and
PostgreSQL's are fixed (512 MiB, 1 GiB less 1 MiB) and lowered here to keep the test small."""

from __future__ import annotations

import pytest

from infinitic.exceptions import StorageError, ValueTooLargeError
from infinitic.storage import Storage

from .conftest import DATABASES

SMALL_LIMIT = 64 * 1024


@pytest.mark.parametrize("database", DATABASES, indirect=True)
async def test_a_value_over_the_limit_is_refused(
    database: Storage, monkeypatch: pytest.MonkeyPatch
) -> None:
    import infinitic.storage._postgres as postgres
    import infinitic.storage._redis as redis

    monkeypatch.setattr(redis, "REDIS_MAX_VALUE_BYTES", SMALL_LIMIT)
    monkeypatch.setattr(postgres, "POSTGRES_MAX_VALUE_BYTES", SMALL_LIMIT)
    kv = database.key_value
    await kv.put("small", b"x" * SMALL_LIMIT)
    mysql = type(kv).__name__.startswith("MySQL")
    size = 8 * 1024 * 1024 + 1 if mysql else SMALL_LIMIT + 1  # MariaDB's 16 MiB packet
    with pytest.raises(ValueTooLargeError) as raised:
        await kv.put("big", b"y" * size, expected_version=0)
    error = raised.value
    assert isinstance(error, StorageError)
    assert error.key == "big"
    assert error.size == size
    assert error.limit < size
    assert f"{size:,} bytes, over the limit of {error.limit:,} bytes" in str(error)
    assert await kv.get("big") is None
    assert (await kv.get("small")) is not None
    if mysql:  # the largest value the server takes (a key of the same length) is stored
        await kv.put("max", b"z" * error.limit)
        found = await kv.get("max")
        assert found is not None
        assert len(found.value) == error.limit
