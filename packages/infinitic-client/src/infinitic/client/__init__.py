"""Infinitic for Python: the client that starts workflows and waits for their results."""

from infinitic.client._client import InfiniticClient, WorkflowDeferred

__all__ = ["InfiniticClient", "WorkflowDeferred"]
