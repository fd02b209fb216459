from __future__ import annotations

import pytest

from infinitic.storage import testing


def test_the_environment_variable_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_URL", "redis://example:1/0")
    assert testing.service_url("redis") == "redis://example:1/0"


def test_the_loopback_default_when_nothing_else(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MYSQL_URL", raising=False)
    monkeypatch.setattr(testing, "reachable", lambda url, timeout=1.0: False)
    monkeypatch.setattr(testing, "_docker_available", lambda: False)
    assert testing.service_url("mysql") == "mysql://root@127.0.0.1:3306/test"


def test_a_container_when_docker_answers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("POSTGRES_URL", raising=False)
    monkeypatch.setattr(testing, "reachable", lambda url, timeout=1.0: False)
    monkeypatch.setattr(testing, "_docker_available", lambda: True)
    monkeypatch.setattr(testing, "_started", {})
    monkeypatch.setattr(testing, "_start_container", lambda kind: f"{kind}://container")
    assert testing.service_url("postgres") == "postgres://container"


def test_unknown_services_are_named() -> None:
    with pytest.raises(ValueError, match="unknown service 'mongo'"):
        testing.service_url("mongo")
