"""What a client's dispatch returns: a workflow method run to await, or a by-tag fan-out."""

from __future__ import annotations

import asyncio
from collections.abc import Generator
from typing import Any, Generic, TypeVar, cast

from infinitic.client._core import ClientCore
from infinitic.common import MethodSignature, exception_from_failure
from infinitic.common.messages import MethodOutcome, WaitMethod, method_outcome_failure
from infinitic.exceptions import InfiniticError, WorkflowTimedOutError

R = TypeVar("R")


class WorkflowDeferred(Generic[R]):
    """A workflow method run started by a client: its ids now, its result when awaited.

    Raises what the method's waiter sees: WorkflowFailedError (with the failure chain),
    WorkflowCanceledError, WorkflowUnknownError. A result, a cancellation or an unknown instance
    is final: awaiting again gives the same. A failure is not (a retried task or workflow task
    lets the method go on): awaiting again asks the instance again, and gives the failure while
    it stands, the new outcome once the method has gone on.

    Attributes:
        workflow_name: the workflow's name.
        id: the workflow id.
        method_run_id: the method run's id (the workflow id for the main method).
    """

    def __init__(
        self,
        core: ClientCore,
        workflow_name: str,
        workflow_id: str,
        method_run_id: str,
        signature: MethodSignature,
        outcome: asyncio.Future[MethodOutcome] | None = None,
    ) -> None:
        self._core = core
        self.workflow_name = workflow_name
        self.id = workflow_id
        self.method_run_id = method_run_id
        self._signature = signature
        self._future = outcome if outcome is not None else core.outcome(workflow_id, method_run_id)
        self._ask = False  # a failure was raised: ask the instance at the next await
        self._later: MethodOutcome | None = None  # an outcome that came after a failure

    @property
    def method_name(self) -> str:
        return self._signature.method_name

    async def result(self) -> R:
        """Wait for the method's result."""
        outcome = await self._outcome()
        if outcome.status == "completed":
            return cast(R, self._signature.load_result(outcome.value))
        failure = method_outcome_failure(outcome)
        assert failure is not None
        if outcome.status == "failed" and not self._ask:
            # The method may go on (a task or the workflow task retried): from now on, keep
            # its next outcome if it comes by itself, and ask for it at the next await.
            self._ask = True
            self._core.listen(self.id, self.method_run_id, self)
        raise exception_from_failure(failure)

    def take(self, outcome: MethodOutcome) -> None:
        """Keep an outcome that came while nothing waited for it (after a failure)."""
        self._later = outcome

    async def _outcome(self) -> MethodOutcome:
        if self._ask:
            later, self._later = self._later, None
            if later is not None:
                self._ask = False
                return later
            future = self._core.outcome(self.id, self.method_run_id)
            wait = WaitMethod(
                workflow_name=self.workflow_name,
                workflow_id=self.id,
                method_run_id=self.method_run_id,
                requester=self._core.requester,
            )
            try:
                await self._core.command(wait)
            except BaseException:
                self._core.forget(self.id, self.method_run_id, future)
                raise
            self._future, self._ask = future, False
        return await asyncio.shield(self._future)

    async def result_within(self, seconds: float | None) -> R:
        """Wait for the method's result at most ``seconds`` (None: no limit).

        Raises:
            WorkflowTimedOutError: no outcome in time (the workflow runs on; this deferred
                stops waiting for it).
        """
        if seconds is None:
            return await self.result()
        try:
            async with asyncio.timeout(seconds):
                return await self.result()
        except TimeoutError:
            self._core.forget(self.id, self.method_run_id, self._future)
            raise WorkflowTimedOutError(
                self.workflow_name, self.id, self.method_name, self.method_run_id
            ) from None

    def __await__(self) -> Generator[Any, None, R]:
        return self.result().__await__()

    def __repr__(self) -> str:
        return f"<WorkflowDeferred {self.workflow_name}.{self.method_name} id={self.id}>"


class ByTagDeferred(Generic[R]):
    """A method started on every instance with a tag (``client.dispatch`` of a by-tag stub's
    method). There is no single result: awaiting it raises InfiniticError; reach an instance
    through ``client.get_ids`` and ``client.get_workflow_by_id`` to follow it.

    Attributes:
        workflow_name: the workflow's name.
        tag: the tag.
        method_run_id: the run id shared by the runs on every instance.
    """

    def __init__(
        self, workflow_name: str, tag: str, method_run_id: str, signature: MethodSignature
    ) -> None:
        self.workflow_name = workflow_name
        self.tag = tag
        self.method_run_id = method_run_id
        self._signature = signature

    @property
    def method_name(self) -> str:
        return self._signature.method_name

    @property
    def id(self) -> str:
        """Refused: the method runs on every instance with the tag, each with its own id."""
        raise InfiniticError(
            f"{self.workflow_name}.{self.method_name} was started on every instance with tag "
            f"{self.tag!r}: there is no single workflow id (client.get_ids lists them)"
        )

    async def result(self) -> R:
        raise InfiniticError(
            f"{self.workflow_name}.{self.method_name} was started on every instance with tag "
            f"{self.tag!r}: there is no single result to wait for"
        )

    def __await__(self) -> Generator[Any, None, R]:
        return self.result().__await__()

    def __repr__(self) -> str:
        return f"<ByTagDeferred {self.workflow_name}.{self.method_name} tag={self.tag!r}>"
