"""What the database backends share: a lazily opened shared client, error translation, hints.

A backend's key-value storage and key-set storage may share one client (a connection pool): the
client opens on first use, inside the running event loop, and closes when the last storage using
it is closed. Driver failures become :class:`~infinitic.exceptions.StorageError` naming the key,
so engines can retry; the drivers reconnect by themselves on the next call.
"""

from __future__ import annotations

import asyncio
import re
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any, ClassVar, Generic, Self, TypeVar, cast

from infinitic.exceptions import InfiniticError, StorageError
from infinitic.storage._secrets import redact

ClientT = TypeVar("ClientT")
SettingsT = TypeVar("SettingsT")
SharedT = TypeVar("SharedT", bound="SharedClient[Any]")
T = TypeVar("T")

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")


def missing_driver(backend: str, module: str, extra: str) -> ImportError:
    """Return the ImportError raised when a backend's driver is not installed."""
    return ImportError(
        f"the {backend} storage needs the {module!r} package; "
        f'install it with: pip install "infinitic-storage[{extra}]"'
    )


def check_identifier(kind: str, name: str) -> str:
    """Return ``name`` if it is a safe SQL identifier (letters, digits, underscores).

    Raises:
        ValueError: ``name`` would need quoting rules we do not want to rely on.
    """
    if not _IDENTIFIER.fullmatch(name):
        raise ValueError(
            f"invalid {kind} name {name!r}: use 1 to 63 letters, digits or underscores, "
            "not starting with a digit"
        )
    return name


def describe_keys(keys: Sequence[str]) -> str:
    """Name a batch of keys in an error message without printing all of them."""
    if len(keys) == 1:
        return f"key {keys[0]!r}"
    if not keys:
        return "no key"
    return f"{len(keys)} keys (first {keys[0]!r})"


class SharedClient(ABC, Generic[ClientT]):
    """A driver client opened on first use and closed when its last user releases it."""

    backend = ""

    def __init__(self, operation_timeout: float) -> None:
        self.operation_timeout = operation_timeout
        self._client: ClientT | None = None
        self._lock = asyncio.Lock()
        self._users = 0
        self._closed = False
        # Clear-text secrets of the settings, masked in every error message built here.
        self.secrets: tuple[str, ...] = ()

    def retain(self) -> None:
        """Register one more storage using this client."""
        self._users += 1

    async def release(self) -> None:
        """Unregister a storage; close the client when none is left (idempotent per user)."""
        self._users = max(0, self._users - 1)
        if self._users == 0 and not self._closed:
            self._closed = True
            client, self._client = self._client, None
            if client is not None:
                await self._close(client)

    @property
    def closed(self) -> bool:
        """Whether the client was closed for good."""
        return self._closed

    async def client(self, operation: str = "connect", what: str = "") -> ClientT:
        """Return the open client, opening it (and preparing tables) on first use.

        ``operation`` and ``what`` (the keys concerned) name the call in error messages.

        Raises:
            StorageError: the storage was closed, or the server cannot be reached.
        """
        if self._closed:
            raise StorageError(f"the {self.backend} storage is closed; create a new one")
        if self._client is not None:
            return self._client
        async with self._lock:
            if self._client is None:
                try:
                    async with asyncio.timeout(self.operation_timeout):
                        self._client = await self._open()
                except InfiniticError:
                    raise
                except self._failures() as e:
                    message = (
                        f"{self.backend} {operation}{' of ' + what if what else ''} failed: "
                        f"cannot connect: {type(e).__name__}: {e}; check the server address "
                        "and credentials (the next call tries to connect again)"
                    )
                    raise StorageError(redact(message, self.secrets)) from e
            return self._client

    @abstractmethod
    async def _open(self) -> ClientT:
        """Open the client and make sure the tables exist."""

    @abstractmethod
    async def _close(self, client: ClientT) -> None:
        """Close the client."""

    @abstractmethod
    def driver_errors(self) -> tuple[type[BaseException], ...]:
        """The driver's exception classes that mean "the operation failed"."""

    def _failures(self) -> tuple[type[BaseException], ...]:
        return (OSError, *self.driver_errors())

    @asynccontextmanager
    async def translating(self, operation: str, what: str) -> AsyncIterator[None]:
        """Run an operation with the operation timeout, turning driver errors into StorageError.

        Args:
            operation: what is being done, for instance ``"put"``.
            what: the key(s) concerned, for instance ``"key 'a'"``.
        """
        failures: tuple[type[BaseException], ...] = (TimeoutError, *self._failures())
        try:
            async with asyncio.timeout(self.operation_timeout):
                yield
        except InfiniticError:
            raise
        except failures as e:
            raise self.storage_error(operation, what, e) from e

    def storage_error(self, operation: str, what: str, error: BaseException) -> StorageError:
        """The StorageError for a driver failure or a timeout (``error``) of ``operation`` on
        ``what``: it says whether the operation can be retried."""
        if isinstance(error, TimeoutError):
            return StorageError(
                f"{self.backend} {operation} of {what} timed out after "
                f"{self.operation_timeout}s; the operation can be retried"
            )
        message = (
            f"{self.backend} {operation} of {what} failed: {type(error).__name__}: {error}; "
            "the operation can be retried (the connection is reopened on the next call)"
        )
        return StorageError(redact(message, self.secrets))

    def is_connection_lost(self, error: BaseException) -> bool:
        """Whether ``error`` means the connection died (so one retry on a new one is worth it)."""
        return False

    async def connection_lost(self, client: ClientT) -> None:
        """Called after a lost connection, before the retry: drop the pooled connections."""

    async def run(self, operation: str, what: str, call: Callable[[ClientT], Awaitable[T]]) -> T:
        """Run ``call`` on the client, retrying once on a new connection if the connection died.

        A write retried after a lost reply may report a VersionConflictError for its own
        write; callers handle it as any conflict (re-read, then decide).

        Raises:
            StorageError: the operation failed (after the retry) or timed out.
        """
        client = await self.client(operation, what)
        try:
            async with self.translating(operation, what):
                return await call(client)
        except StorageError as e:
            cause = e.__cause__
            if cause is None or not self.is_connection_lost(cause):
                raise
        await self.connection_lost(client)
        client = await self.client(operation, what)
        async with self.translating(operation, what):
            return await call(client)


class SharedClientUser(Generic[SettingsT, SharedT]):
    """A storage using a shared driver client: it retains the client when created and releases
    it once when closed, so the client closes with its last user.

    Subclasses name their settings class (with ``from_url``) and their shared-client class.
    """

    _settings_type: ClassVar[Any]
    _client_type: ClassVar[Any]

    def __init__(self, settings: SettingsT | None = None, shared: SharedT | None = None) -> None:
        if settings is None:
            settings = cast(Any, shared).settings if shared is not None else self._settings_type()
        self.settings: SettingsT = settings
        self._shared: SharedT = shared if shared is not None else self._client_type(settings)
        self._shared.retain()
        self._released = False

    @classmethod
    def from_url(cls, url: str, **options: Any) -> Self:
        """Storage at ``url``; ``options`` are other attributes of its settings."""
        return cls(cls._settings_type.from_url(url, **options))

    async def close(self) -> None:
        """Release the shared client (closed with its last user); idempotent."""
        if not self._released:
            self._released = True
            await self._shared.release()
