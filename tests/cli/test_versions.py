"""Each package says its version: ``infinitic.<module>.__version__`` is its distribution's."""

from __future__ import annotations

import importlib
import importlib.metadata

import pytest

MODULES = {
    "infinitic-cache": "infinitic.cache",
    "infinitic-client": "infinitic.client",
    "infinitic-common": "infinitic.common",
    "infinitic-storage": "infinitic.storage",
    "infinitic-task-executor": "infinitic.task_executor",
    "infinitic-task-tag": "infinitic.task_tag",
    "infinitic-transport": "infinitic.transport",
    "infinitic-transport-pulsar": "infinitic.transport_pulsar",
    "infinitic-worker": "infinitic.worker",
    "infinitic-workflow-engine": "infinitic.workflow_engine",
    "infinitic-workflow-tag": "infinitic.workflow_tag",
}


@pytest.mark.parametrize(("distribution", "module"), sorted(MODULES.items()))
def test_version_of_each_package(distribution: str, module: str) -> None:
    version = importlib.import_module(module).__version__
    assert version == importlib.metadata.version(distribution)
