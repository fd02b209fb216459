"""Workflows of the workflow-task timeout and retry scenario on real backends (issue 12,
item 9)."""

from __future__ import annotations

from collections import Counter

from infinitic.services import ExponentialBackoff, retry
from infinitic.workflows import Workflow

#: Attempts of each instance's workflow task, by workflow id (the code runs in this process).
ATTEMPTS: Counter[str] = Counter()
#: How many first attempts fail (spin past the timeout, or raise).
FAILING = {"attempts": 1}
QUICK_RETRY = ExponentialBackoff(
    minimum_seconds=0.05, maximum_seconds=0.05, random_factor=0.0, maximum_retries=2
)


class Spinner(Workflow):
    """Its first attempts spin (CPU) until the watchdog stops them."""

    async def run(self) -> str:
        ATTEMPTS[self.workflow_id] += 1
        if ATTEMPTS[self.workflow_id] <= FAILING["attempts"]:
            while True:
                pass
        return f"done after {ATTEMPTS[self.workflow_id]} attempts"


@retry(QUICK_RETRY)
class Flaky(Workflow):
    """Raises in its first attempts; retried by the policy declared on the class."""

    async def run(self) -> str:
        ATTEMPTS[self.workflow_id] += 1
        if ATTEMPTS[self.workflow_id] <= FAILING["attempts"]:
            raise ValueError(f"flaky attempt {ATTEMPTS[self.workflow_id]}")
        return f"done after {ATTEMPTS[self.workflow_id]} attempts"
