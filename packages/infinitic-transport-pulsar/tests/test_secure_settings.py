"""Secure defaults of the Pulsar settings: host names verified, tokens masked, a warning for a
token sent over plain HTTP, private data directories for an embedded broker."""

from __future__ import annotations

import logging
import os
import ssl
import stat
from pathlib import Path

import pytest

from infinitic.transport_pulsar import PulsarSettings
from infinitic.transport_pulsar._admin import PulsarAdmin
from infinitic.transport_pulsar._settings import (
    EMBEDDED_DATA_DIR_MODE,
    EMBEDDED_DATA_FILE_MODE,
    EMBEDDED_UMASK,
    private_data_dir,
    write_private_file,
)

TOKEN = "eyJhbGciOiJIUzI1NiJ9.c2VjcmV0.c2lnbmF0dXJl"


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_tls_host_names_are_verified_by_default() -> None:
    settings = PulsarSettings(broker_service_url="pulsar+ssl://broker:6651")
    assert settings.tls_enable_hostname_verification is True
    assert settings.tls_allow_insecure_connection is False
    admin = PulsarAdmin(PulsarSettings(web_service_url="https://broker:8443"))
    assert admin._ssl is not None
    assert (admin._ssl.check_hostname, admin._ssl.verify_mode) == (True, ssl.CERT_REQUIRED)


def test_host_name_verification_can_still_be_turned_off() -> None:
    settings = PulsarSettings.model_validate(
        {"webServiceUrl": "https://10.0.0.7:8443", "tlsEnableHostnameVerification": False}
    )
    admin = PulsarAdmin(settings)
    assert admin._ssl is not None
    assert (admin._ssl.check_hostname, admin._ssl.verify_mode) == (False, ssl.CERT_REQUIRED)


def test_tokens_are_masked_in_reprs_and_dumps() -> None:
    settings = PulsarSettings.model_validate(
        {"webServiceUrl": "https://broker:8443", "authentication": {"token": TOKEN}}
    )
    for shown in (
        repr(settings),
        str(settings),
        repr(settings.authentication),
        settings.model_dump_json(),
        str(settings.model_dump()),
    ):
        assert TOKEN not in shown
    assert settings.authentication.token is not None
    assert settings.authentication.token.get_secret_value() == TOKEN


@pytest.mark.parametrize(
    ("url", "token", "warned"),
    [
        ("http://broker:8080", TOKEN, True),
        ("https://broker:8443", TOKEN, False),
        ("http://broker:8080", None, False),
    ],
)
def test_a_token_sent_over_plain_http_is_warned_about(
    caplog: pytest.LogCaptureFixture, url: str, token: str | None, warned: bool
) -> None:
    caplog.set_level(logging.WARNING, "infinitic.transport_pulsar")
    settings = PulsarSettings.model_validate(
        {"webServiceUrl": url, "authentication": {"token": token}}
    )
    assert settings.token_over_plain_http is warned
    PulsarAdmin(settings)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    if warned:
        (warning,) = warnings
        assert "unencrypted" in warning
        assert url in warning
        assert TOKEN not in warning
    else:
        assert warnings == []


def test_a_private_data_dir_is_created_0700(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        created = private_data_dir(tmp_path / "a" / "pulsar-data")
    finally:
        os.umask(old)
    assert created.is_dir()
    assert _mode(created) == EMBEDDED_DATA_DIR_MODE == 0o700


def test_an_existing_data_dir_is_narrowed_to_0700(tmp_path: Path) -> None:
    existing = tmp_path / "pulsar-data"
    existing.mkdir(mode=0o755)
    existing.chmod(0o755)
    assert private_data_dir(existing) == existing
    assert _mode(existing) == 0o700


def test_private_files_are_0600_whatever_the_umask_or_an_older_file(tmp_path: Path) -> None:
    old = os.umask(0o000)
    try:
        fresh = write_private_file(tmp_path / "broker.toml", "port = 6650\n")
        older = tmp_path / "broker.pid"
        older.write_text("1")
        older.chmod(0o644)
        write_private_file(older, b"4242")
    finally:
        os.umask(old)
    assert fresh.read_text() == "port = 6650\n"
    assert older.read_bytes() == b"4242"
    assert _mode(fresh) == _mode(older) == EMBEDDED_DATA_FILE_MODE == 0o600


def test_the_embedded_umask_leaves_nothing_to_others(tmp_path: Path) -> None:
    # What the broker process creates under this umask (its database files) is private too.
    old = os.umask(EMBEDDED_UMASK)
    try:
        (tmp_path / "db").mkdir()
        (tmp_path / "db" / "segment").write_bytes(b"x")
    finally:
        os.umask(old)
    assert _mode(tmp_path / "db") == 0o700
    assert _mode(tmp_path / "db" / "segment") == 0o600
