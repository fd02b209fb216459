"""Secure defaults of the storage settings: secrets masked, TLS that means what it says, and a
warning when Redis keeps nothing on disk."""

from __future__ import annotations

import logging
import ssl
from pathlib import Path

import pytest
from pydantic import SecretStr

from infinitic.exceptions import StorageError
from infinitic.storage import (
    MySQLSettings,
    PostgresSettings,
    PostgresStorage,
    RedisSettings,
    RedisStorage,
    VersionedValue,
)

from .conftest import POSTGRES_URL, require, unique
from .private_postgres import private_postgres
from .private_redis import Certificates, make_certificates, private_redis

SECRET = "hunter2-s3cr3t"


# -- secrets ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "settings",
    [
        RedisSettings(password=SECRET),
        RedisSettings(url=f"redis://app:{SECRET}@cache.example:6379/0"),
        RedisSettings.from_url(f"rediss://:{SECRET}@cache.example/1", password=SECRET),
        PostgresSettings(password=SECRET),
        PostgresSettings(url=f"postgresql://app:{SECRET}@db.example/app"),
        PostgresSettings(url=f"postgresql://app@db.example/app?password={SECRET}&sslmode=require"),
        MySQLSettings(password=SECRET),
        MySQLSettings.from_url(f"mysql://app:{SECRET}@db.example/states"),
    ],
    ids=repr,
)
def test_passwords_never_appear_in_reprs(settings: object) -> None:
    shown = repr(settings)
    assert SECRET not in shown
    assert SECRET not in str(settings)
    if getattr(settings, "password", None) is not None:
        assert "SecretStr('**********')" in shown


def test_a_password_given_as_text_becomes_a_secret_the_driver_still_gets() -> None:
    for settings in (
        RedisSettings(password=SECRET),
        PostgresSettings(password=SECRET),
        MySQLSettings(password=SECRET),
    ):
        assert isinstance(settings.password, SecretStr)
        assert settings.password.get_secret_value() == SECRET
    assert RedisSettings(password=SecretStr(SECRET)) == RedisSettings(password=SECRET)
    assert RedisSettings().password is None


def test_a_url_in_a_repr_keeps_all_but_its_password() -> None:
    shown = repr(RedisSettings(url=f"redis://app:{SECRET}@cache.example:6380/2"))
    assert "url='redis://app:***@cache.example:6380/2'" in shown
    shown = repr(PostgresSettings(url=f"postgresql://u@h/d?password={SECRET}&application=x"))
    assert "url='postgresql://u@h/d?password=***&application=x'" in shown


def test_a_refused_mysql_url_is_named_without_its_password() -> None:
    with pytest.raises(ValueError, match="not a MySQL URL") as caught:
        MySQLSettings.from_url(f"postgresql://app:{SECRET}@db.example/app")
    assert SECRET not in str(caught.value)


async def test_connection_errors_name_the_server_but_not_the_password() -> None:
    # Port 1 on loopback: nothing listens, the connection is refused at once.
    storage = RedisStorage.from_url(f"redis://app:{SECRET}@127.0.0.1:1/0", connect_timeout=1.0)
    try:
        with pytest.raises(StorageError, match="cannot connect") as caught:
            await storage.key_value.get("k")
        assert SECRET not in str(caught.value)
    finally:
        await storage.close()


def test_a_driver_error_echoing_the_password_is_masked() -> None:
    from infinitic.storage._postgres import _PostgresPool

    pool = _PostgresPool(PostgresSettings(url=f"postgresql://app:{SECRET}@h/d", password="other"))
    error = pool.storage_error("get", "key 'k'", OSError(f"bad dsn app:{SECRET}@h, other"))
    assert SECRET not in str(error)
    assert "other" not in str(error).replace("other than", "")
    assert "***" in str(error)


# -- PostgreSQL TLS ---------------------------------------------------------------------------


def _context(settings: PostgresSettings) -> ssl.SSLContext | None:
    return settings.tls_context()


@pytest.mark.parametrize(
    ("settings", "verified", "hostname"),
    [
        (PostgresSettings(ssl=True), ssl.CERT_REQUIRED, True),
        (PostgresSettings(ssl="verify-full"), ssl.CERT_REQUIRED, True),
        (PostgresSettings(ssl="verify-ca"), ssl.CERT_REQUIRED, False),
        (PostgresSettings(ssl="require"), ssl.CERT_NONE, False),
        (PostgresSettings(url="postgresql://u@h/d?sslmode=verify-full"), ssl.CERT_REQUIRED, True),
        (PostgresSettings(url="postgresql://u@h/d?sslmode=require"), ssl.CERT_NONE, False),
        # the setting wins over the URL
        (
            PostgresSettings(url="postgresql://u@h/d?sslmode=require", ssl=True),
            ssl.CERT_REQUIRED,
            True,
        ),
    ],
    ids=repr,
)
def test_postgres_tls_settings_mean_what_they_say(
    settings: PostgresSettings, verified: ssl.VerifyMode, hostname: bool
) -> None:
    context = _context(settings)
    assert context is not None
    assert (context.verify_mode, context.check_hostname) == (verified, hostname)


def test_postgres_require_with_a_ca_verifies_the_certificate(tmp_path: Path) -> None:
    certificates = make_certificates(tmp_path)
    for settings in (
        PostgresSettings(ssl="require", ssl_ca_certs=str(certificates.ca)),
        PostgresSettings(url=f"postgresql://u@h/d?sslmode=require&sslrootcert={certificates.ca}"),
    ):
        context = _context(settings)
        assert context is not None
        assert (context.verify_mode, context.check_hostname) == (ssl.CERT_REQUIRED, False)


@pytest.mark.parametrize(
    "settings",
    [PostgresSettings(), PostgresSettings(ssl=False), PostgresSettings(ssl="disable")],
    ids=repr,
)
def test_postgres_without_tls_is_plaintext_not_opportunistic(settings: PostgresSettings) -> None:
    assert _context(settings) is None


@pytest.mark.parametrize(
    "make",
    [
        lambda: PostgresSettings(ssl="prefer"),
        lambda: PostgresSettings(ssl="allow"),
        lambda: PostgresSettings(url="postgresql://u@h/d?sslmode=prefer"),
    ],
)
def test_postgres_opportunistic_tls_is_refused(make: object) -> None:
    with pytest.raises(ValueError, match="falls back to plaintext"):
        make()  # type: ignore[operator]


@pytest.mark.parametrize(
    ("text", "flag"), [("true", True), ("TRUE", True), ("0", False), ("off", False)]
)
def test_postgres_ssl_given_as_text_by_an_environment_override_is_a_flag(
    text: str, flag: bool
) -> None:
    assert PostgresSettings(ssl=text).ssl is flag


def test_postgres_unknown_tls_mode_is_refused() -> None:
    with pytest.raises(ValueError, match="use one of disable, require, verify-ca, verify-full"):
        PostgresSettings(ssl="yes please")


@pytest.mark.postgres
async def test_postgres_tls_asked_of_a_server_without_tls_fails_instead_of_plaintext() -> None:
    url = require("PostgreSQL", POSTGRES_URL)
    storage = PostgresStorage.from_url(url, ssl="require", connect_timeout=5.0)
    try:
        with pytest.raises(StorageError, match="cannot connect"):
            await storage.key_value.get("k")
    finally:
        await storage.close()


# -- PostgreSQL TLS, against a TLS-enabled PostgreSQL of the test's own -----------------------


async def _connection_uses_tls(settings: PostgresSettings) -> bool:
    """Whether the storage's connection to the server is encrypted, as the server sees it."""
    storage = PostgresStorage(settings)
    try:
        await storage.key_value.put(unique("tls"), b"v")
        pool = await storage.key_value._shared.client()
        encrypted = await pool.fetchval("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
        return bool(encrypted)
    finally:
        await storage.close()


async def test_postgres_tls_settings_negotiate_what_they_say(
    certificates: Certificates,
) -> None:
    ca = str(certificates.ca)
    with private_postgres(certificates) as port:
        at = {"host": "127.0.0.1", "port": port, "user": "postgres", "database": "postgres"}
        url = f"postgresql://postgres@localhost:{port}/postgres"
        # verified: the certificate against the test's CA, and the host name
        assert await _connection_uses_tls(PostgresSettings(**at, ssl=True, ssl_ca_certs=ca))
        assert await _connection_uses_tls(
            PostgresSettings(url=f"{url}?sslmode=verify-full&sslrootcert={ca}")
        )
        # encrypted without verification, only when asked
        assert await _connection_uses_tls(PostgresSettings(**at, ssl="require"))
        # nothing said: plaintext, not an unverified "prefer"
        assert not await _connection_uses_tls(PostgresSettings(**at))
        # a certificate the system does not trust is refused
        storage = PostgresStorage(PostgresSettings(**at, ssl=True, connect_timeout=5.0))
        try:
            with pytest.raises(StorageError, match="CERTIFICATE_VERIFY_FAILED"):
                await storage.key_value.get("k")
        finally:
            await storage.close()


# -- Redis TLS, against a TLS-only Redis of the test's own --------------------------------------


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    return make_certificates(tmp_path_factory.mktemp("certificates"))


async def _round_trip(settings: RedisSettings) -> None:
    storage = RedisStorage(settings)
    try:
        key = unique("tls")
        await storage.key_value.put(key, b"over TLS")
        assert await storage.key_value.get(key) == VersionedValue(b"over TLS", 1)
    finally:
        await storage.close()


async def _refused(settings: RedisSettings) -> str:
    storage = RedisStorage(settings)
    try:
        with pytest.raises(StorageError) as caught:
            await storage.key_value.get("k")
        return str(caught.value)
    finally:
        await storage.close()


async def test_redis_ssl_true_with_a_redis_url_negotiates_tls(
    tmp_path: Path, certificates: Certificates
) -> None:
    # The server has no plaintext port: a round trip there is a TLS round trip.
    with private_redis(tmp_path, tls=certificates) as port:
        ca = str(certificates.ca)
        url = f"redis://127.0.0.1:{port}/0"
        await _round_trip(RedisSettings(url=url, ssl=True, ssl_ca_certs=ca))
        await _round_trip(RedisSettings(url=f"rediss://localhost:{port}/0", ssl_ca_certs=ca))
        await _round_trip(RedisSettings(host="127.0.0.1", port=port, ssl=True, ssl_ca_certs=ca))
        # and the connection class says so too
        settings = RedisSettings(url=f"redis://127.0.0.1:{port}/0", ssl=True, ssl_ca_certs=ca)
        storage = RedisStorage(settings)
        try:
            client = await storage.key_value._shared.client()
            connection = await client.connection_pool.get_connection()
            try:
                assert connection.__class__.__name__ == "SSLConnection"
                await connection.connect()
                assert connection._writer is not None
                assert connection._writer.get_extra_info("ssl_object") is not None
            finally:
                await client.connection_pool.release(connection)
        finally:
            await storage.close()


async def test_redis_tls_verifies_the_server_certificate(
    tmp_path: Path, certificates: Certificates
) -> None:
    with private_redis(tmp_path, tls=certificates) as port:
        # Not trusted: the self-signed CA is not among the system's certificates.
        message = await _refused(RedisSettings(url=f"redis://127.0.0.1:{port}/0", ssl=True))
        assert "CERTIFICATE_VERIFY_FAILED" in message
        # Plaintext to a TLS port never succeeds.
        await _refused(RedisSettings(url=f"redis://127.0.0.1:{port}/0", connect_timeout=2.0))


# -- Redis persistence warning ---------------------------------------------------------------


async def _first_call(port: int) -> None:
    storage = RedisStorage.from_url(f"redis://127.0.0.1:{port}/0")
    try:
        await storage.key_value.put("k", b"v")
        await storage.key_set.add("t", "m")
    finally:
        await storage.close()


def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "infinitic.storage" and r.levelno == logging.WARNING
    ]


async def test_a_redis_keeping_nothing_on_disk_is_warned_about_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "infinitic.storage")
    with private_redis(tmp_path, "--appendonly", "no") as port:
        await _first_call(port)
    (warning,) = _warnings(caplog)
    assert f"127.0.0.1:{port}" in warning
    assert "keeps nothing on disk" in warning


@pytest.mark.parametrize(
    "options",
    [("--appendonly", "yes"), ("--appendonly", "no", "--save", "3600 1")],
    ids=["aof", "rdb"],
)
async def test_a_redis_with_persistence_is_not_warned_about(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, options: tuple[str, ...]
) -> None:
    caplog.set_level(logging.WARNING, "infinitic.storage")
    with private_redis(tmp_path, *options) as port:
        await _first_call(port)
    assert _warnings(caplog) == []


async def test_a_redis_without_config_command_works_without_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, "infinitic.storage")
    with private_redis(tmp_path, "--appendonly", "no", "--rename-command", "CONFIG", "") as port:
        await _first_call(port)
    assert _warnings(caplog) == []
    assert "persistence not checked" in caplog.text
