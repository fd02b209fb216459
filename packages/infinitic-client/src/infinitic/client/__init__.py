"""Infinitic for Python: the client that starts workflows and waits for their results."""

import importlib.metadata

from infinitic.client._client import InfiniticClient
from infinitic.client._config import load_yaml
from infinitic.client._deferred import ByTagDeferred, WorkflowDeferred
from infinitic.client._existing import ChannelSender, ExistingWorkflowStub
from infinitic.client._tags import WorkflowByTagStub

__version__: str = importlib.metadata.version("infinitic-client")

__all__ = [
    "ByTagDeferred",
    "ChannelSender",
    "ExistingWorkflowStub",
    "InfiniticClient",
    "WorkflowByTagStub",
    "WorkflowDeferred",
    "load_yaml",
]
