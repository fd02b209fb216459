"""A client refuses at once a class that is not a workflow (it used to be accepted, then hang)."""

from __future__ import annotations

import pytest

from infinitic.client import InfiniticClient
from infinitic.transport import InMemoryTransport

from .cli_flows import Greeter, HelloWorkflow, NotAWorkflow


def test_new_workflow_and_get_workflow_by_id_need_a_workflow_class() -> None:
    client = InfiniticClient(transport=InMemoryTransport())
    for cls in (NotAWorkflow, Greeter):
        with pytest.raises(
            TypeError, match=f"expects a Workflow subclass .* the class {cls.__name__}"
        ):
            client.new_workflow(cls)
        with pytest.raises(TypeError, match="get_workflow_by_id expects a Workflow subclass"):
            client.get_workflow_by_id(cls, "some-id")
    with pytest.raises(TypeError, match="got 'HelloWorkflow'"):
        client.new_workflow("HelloWorkflow")  # type: ignore[arg-type]
    client.new_workflow(HelloWorkflow)
    client.get_workflow_by_id(HelloWorkflow, "some-id")
