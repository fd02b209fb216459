"""Passwords never show in the worker configuration's reprs or error messages."""

from __future__ import annotations

import pytest

from infinitic.exceptions import ConfigurationError
from infinitic.worker import InfiniticWorker, StorageConfig


def test_a_storage_section_repr_hides_passwords() -> None:
    config = StorageConfig.model_validate(
        {"postgres": {"password": "hunter2", "url": "postgresql://app:s3cret@db:5432/test"}}
    )
    shown = repr(config)
    assert "hunter2" not in shown
    assert "s3cret" not in shown
    assert "db:5432" in shown  # the rest is still there to read


def test_an_invalid_password_is_not_echoed_in_the_error() -> None:
    config = {
        "transport": {"inMemory": {}},
        "storage": {"postgres": {"password": ["hunter2"]}},
        "workflows": [],
    }
    with pytest.raises(ConfigurationError) as raised:
        InfiniticWorker.from_config(config)
    assert "hunter2" not in str(raised.value)
    assert "password" in str(raised.value)
