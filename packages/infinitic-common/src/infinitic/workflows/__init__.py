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

from infinitic.common._stubs import dispatch, new_service, new_workflow
from infinitic.common._workflow import Workflow
from infinitic.common._workflow_api import Deferred, all_of, any_of, inline, timer

__all__ = [
    "Deferred",
    "Workflow",
    "all_of",
    "any_of",
    "dispatch",
    "inline",
    "new_service",
    "new_workflow",
    "timer",
]
