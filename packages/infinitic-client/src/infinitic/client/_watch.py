"""Telling a user that nobody seems to run a workflow, instead of waiting silently.

A client cannot see a workflow's consumers through the transport interface (pulsar-lite has no
admin API, the in-memory transport none at all), but it can see answers. Each workflow command
a client sends starts a watch of that workflow (one at a time per workflow): if, within the
delay, nothing came back from the workflow's state engine (no outcome of any of its instances),
the client asks it: a ``WaitMethod`` on an id that exists nowhere, which a running state engine
answers at once with an "unknown" outcome (one storage read, no state written). When that
answer does not come either, the client logs a warning naming the workflow and the topic.

What it detects: no worker runs the workflow's state engine, or the state engine is too far
behind to answer within the delay plus :data:`PROBE_WAIT`. What it does not: a workflow whose
state engine runs but whose executor, tag engine or services nobody runs (their messages wait
in their own topics; ``infinitic workflow status`` shows such an instance running); a worker
that stops after the watch. Nothing is sent while answers keep coming.

Services are not watched: the one message a client sends a service, ``CompleteDelegatedTask``
(to its tag engine), gets no answer, and no message of the ``task-tag`` or ``task-executor``
topics is a request that a running tag engine or executor answers, so there is nothing to
probe them with short of a new request message (which workers of earlier versions would
dead-letter).
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Awaitable, Callable

from infinitic.common import TopicKind, new_id, topic
from infinitic.common.messages import MethodOutcome, Requester, WaitMethod

logger = logging.getLogger("infinitic.client")

#: Seconds a probe waits for the state engine's answer once the delay has passed.
PROBE_WAIT = 5.0
DEFAULT_UNREGISTERED_WARNING = 30.0

Send = Callable[[str, WaitMethod, str], Awaitable[None]]


class UnregisteredWatch:
    """Watches the workflows a client sends commands to (see the module documentation).

    Args:
        client_name: the client's name (logs).
        delay: seconds without an answer before the state engine is asked; None: no watch.
        send: publishes a probe (topic, message, key).
        requester: where the probe's answer comes back (the client).
        describe: the name of a topic on the broker (logs).
    """

    def __init__(
        self,
        client_name: str,
        delay: float | None,
        send: Send,
        requester: Requester,
        describe: Callable[[str], str] = str,
    ) -> None:
        self.client_name = client_name
        self._describe = describe
        self.delay = delay
        self._send = send
        self._requester = requester
        #: Seconds a probe waits for the state engine's answer.
        self.probe_wait = PROBE_WAIT
        self._heard: dict[str, float] = {}  # workflow name -> loop time of its last answer
        self._watches: dict[str, asyncio.Task[None]] = {}
        self._probes: dict[str, asyncio.Future[None]] = {}
        #: Warnings logged (workflow name, topic), for tests and tools.
        self.warned: list[tuple[str, str]] = []

    def sent(self, workflow_name: str, to: str) -> None:
        """A command for ``workflow_name`` went to ``to``: watch for an answer."""
        if self.delay is None or workflow_name in self._watches:
            return
        since = asyncio.get_running_loop().time()
        task = asyncio.ensure_future(self._watch(workflow_name, to, since))
        self._watches[workflow_name] = task
        task.add_done_callback(lambda _: self._watches.pop(workflow_name, None))

    def heard(self, outcome: MethodOutcome) -> bool:
        """Note an outcome from a workflow's state engine; True when it answers a probe (it
        is then nobody else's)."""
        self._heard[outcome.workflow_name] = asyncio.get_running_loop().time()
        probe = self._probes.pop(outcome.workflow_id, None)
        if probe is None:
            return False
        if not probe.done():
            probe.set_result(None)
        return True

    def close(self) -> None:
        """Stop watching; idempotent."""
        for task in list(self._watches.values()):
            task.cancel()
        self._watches.clear()

    def _answered_since(self, workflow_name: str, since: float) -> bool:
        return self._heard.get(workflow_name, -math.inf) >= since

    async def _watch(self, workflow_name: str, to: str, since: float) -> None:
        assert self.delay is not None
        await asyncio.sleep(self.delay)
        if self._answered_since(workflow_name, since):
            return
        probe_id = f"infinitic-probe-{new_id()}"
        answer: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._probes[probe_id] = answer
        probe = WaitMethod(
            workflow_name=workflow_name,
            workflow_id=probe_id,
            method_run_id=probe_id,
            requester=self._requester,
        )
        try:
            await self._send(topic(TopicKind.WORKFLOW_CMD, workflow_name), probe, probe_id)
            await asyncio.wait_for(answer, self.probe_wait)
        except TimeoutError:
            if self._answered_since(workflow_name, since):
                return
            where = self._describe(to)
            self.warned.append((workflow_name, where))
            logger.warning(
                "client %s: nothing answered from workflow %s for %.0f s: is a worker running "
                "its state engine? Its messages wait on topic %s until one starts (a state "
                "engine far behind looks the same). Set client.unregisteredWarningSeconds "
                "(unregistered_warning_seconds) to null to silence this.",
                self.client_name,
                workflow_name,
                self.delay + self.probe_wait,
                where,
            )
        except Exception as e:  # a probe that cannot be sent says nothing about the workflow
            logger.debug("client %s: probe of %s not sent: %s", self.client_name, to, e)
        finally:
            self._probes.pop(probe_id, None)
