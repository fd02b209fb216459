"""Workflows whose code blocks, fails for a while or is not deterministic (issue 12, item 9)."""

from __future__ import annotations

import inspect
import random
import time
from collections import Counter

from infinitic.services import ExponentialBackoff, retry
from infinitic.workflows import Workflow, inline

#: Attempts of each instance's workflow task, by workflow id (the code runs in this process).
ATTEMPTS: Counter[str] = Counter()
#: How many first attempts fail (raise, or spin past the timeout).
FAILING = {"attempts": 1}
QUICK_RETRY = ExponentialBackoff(
    minimum_seconds=0.05, maximum_seconds=0.05, random_factor=0.0, maximum_retries=2
)


def line_of(fn: object, marker: str) -> int:
    """The line number of the line of ``fn`` holding ``marker``."""
    lines, first = inspect.getsourcelines(fn)  # type: ignore[arg-type]
    return first + next(i for i, line in enumerate(lines) if marker in line)


class Spinner(Workflow):
    """Its first attempts spin (CPU) until the watchdog stops them."""

    async def run(self) -> str:
        ATTEMPTS[self.workflow_id] += 1
        if ATTEMPTS[self.workflow_id] <= FAILING["attempts"]:
            while True:  # spins here
                pass
        return f"done after {ATTEMPTS[self.workflow_id]} attempts"


class Sleeper(Workflow):
    """Blocks its step (CPU or sleep) for a while, then completes."""

    async def run(self, seconds: float, cpu: bool) -> str:
        if cpu:  # CPU time, not wall time: a loaded machine gives it less than its share
            end = time.thread_time() + seconds
            while time.thread_time() < end:  # burns CPU here
                pass
        else:
            time.sleep(seconds)  # noqa: ASYNC251 (sleeps here)
        return "woke"


@retry(QUICK_RETRY)
class Flaky(Workflow):
    """Raises in its first attempts; retried by the policy declared on the class."""

    async def run(self) -> str:
        ATTEMPTS[self.workflow_id] += 1
        if ATTEMPTS[self.workflow_id] <= FAILING["attempts"]:
            raise ValueError(f"flaky attempt {ATTEMPTS[self.workflow_id]}")
        return f"done after {ATTEMPTS[self.workflow_id]} attempts"


class Undeclared(Workflow):
    """Raises in its first attempts; no retry declared."""

    async def run(self) -> str:
        ATTEMPTS[self.workflow_id] += 1
        if ATTEMPTS[self.workflow_id] <= FAILING["attempts"]:
            raise ValueError(f"flaky attempt {ATTEMPTS[self.workflow_id]}")
        return f"done after {ATTEMPTS[self.workflow_id]} attempts"


class Dice(Workflow):
    """Reads a random value the wrong way (and the right ways)."""

    async def run(self, how: str) -> float:
        if how == "random":
            return random.random()  # not deterministic
        if how == "time":
            return time.time()  # not deterministic
        if how == "open":
            with open(__file__) as f:  # noqa: ASYNC230 (I/O)
                return float(len(f.read()) > 0)
        if how == "inline":
            return float(await inline(lambda: random.random()))
        self.logger.info("rolling")  # logging reads the clock: not reported
        return self.random() + self.now() * 0
