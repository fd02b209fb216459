"""The workflow-side API: the Workflow base class, stubs, Deferreds, timers and combinators.

Example:
    >>> from infinitic.workflows import Workflow, new_service
    >>> class HelloService:
    ...     async def hello(self, name: str) -> str: ...
    >>> class HelloWorkflow(Workflow):
    ...     service = new_service(HelloService)
    ...     async def greet(self, name: str) -> str:
    ...         return await self.service.hello(name)
"""

from infinitic.common._channels import Channel, Receiving
from infinitic.common._stubs import (
    dispatch,
    get_workflow_by_id,
    get_workflow_by_tag,
    new_service,
    new_workflow,
)
from infinitic.common._workflow import Workflow
from infinitic.common._workflow_api import Deferred, all_of, any_of, inline, patched, timer

__all__ = [
    "Channel",
    "Deferred",
    "Receiving",
    "Workflow",
    "all_of",
    "any_of",
    "dispatch",
    "get_workflow_by_id",
    "get_workflow_by_tag",
    "inline",
    "new_service",
    "new_workflow",
    "patched",
    "timer",
]
