"""Pieces of the infinitic command: secrets hidden, versions, values parsed."""

from __future__ import annotations

from infinitic.worker._cli_common import parse_value, to_json
from infinitic.worker._secrets import HIDDEN, hide_secrets, hide_url_password
from infinitic.worker.cli import installed_versions, main


def test_passwords_tokens_and_url_passwords_are_hidden() -> None:
    data = {
        "storage": {"postgres": {"user": "u", "password": "p", "maxPoolSize": 3}},
        "transport": {"pulsar": {"authentication": {"token": "t"}, "tlsCertFilePath": "/x"}},
        "urls": ["redis://:s3cret@db:6379/0", "pulsar://host:6650"],
        "redis_password": None,
    }
    shown = hide_secrets(data)
    assert shown["storage"]["postgres"] == {"user": "u", "password": HIDDEN, "maxPoolSize": 3}
    assert shown["transport"]["pulsar"]["authentication"] == {"token": HIDDEN}
    assert shown["transport"]["pulsar"]["tlsCertFilePath"] == "/x"
    assert shown["urls"] == [f"redis://:{HIDDEN}@db:6379/0", "pulsar://host:6650"]
    assert shown["redis_password"] is None
    assert hide_url_password("mysql://root:pw@h/db?x=1") == f"mysql://root:{HIDDEN}@h/db?x=1"


def test_versions_of_installed_packages() -> None:
    versions = installed_versions()
    assert "infinitic-worker" in versions
    assert all(name.startswith("infinitic") for name in versions)


def test_values_are_json_or_text() -> None:
    assert parse_value("10") == 10
    assert parse_value('{"a": [1]}') == {"a": [1]}
    assert parse_value("bob") == "bob"
    assert to_json({"b": b"\x00", "s": {1}}) == '{"b": "AA==", "s": [1]}'


def test_main_returns_the_exit_code() -> None:
    assert main(["--help"]) == 0
    assert main(["nope"]) == 2
    assert main(["worker", "-c", "/nonexistent.yml", "--check"]) == 2
