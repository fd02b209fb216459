"""The Workflow base class."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping
from typing import Any

from infinitic.common._workflow_api import WorkflowRuntimeApi, current_runtime


class Workflow:
    """Base class of workflows: subclass it and write ``async def`` methods.

    Workflow code is replayed from its history after every event, so it must be deterministic:
    no I/O, no clock, no randomness except through ``inline``, ``self.now()`` and the stubs.
    Ordinary asyncio works inside (``await``, ``gather``, ``create_task``, ``sleep`` as a
    durable timer, ``wait_for``).
    """

    _infinitic_runtime: WorkflowRuntimeApi | None = None

    def _rt(self) -> WorkflowRuntimeApi:
        return self._infinitic_runtime or current_runtime("a Workflow property")

    @property
    def workflow_id(self) -> str:
        """The id of this instance."""
        return self._rt().workflow_id

    @property
    def workflow_name(self) -> str:
        """The name of this workflow."""
        return self._rt().workflow_name

    @property
    def method_name(self) -> str:
        """The name of the method run currently executing."""
        return self._rt().current_method_name()

    @property
    def tags(self) -> frozenset[str]:
        """The tags of this instance."""
        return self._rt().tags

    @property
    def meta(self) -> Mapping[str, bytes]:
        """The metadata of this instance."""
        return self._rt().meta

    def now(self) -> float:
        """The deterministic current time (epoch seconds) of this workflow task."""
        return self._rt().now()

    def random(self) -> float:
        """A deterministic random float in [0, 1): the same at every replay."""
        return self._rt().random().random()

    def uuid4(self) -> uuid.UUID:
        """A deterministic random UUID (version 4): the same at every replay."""
        return uuid.UUID(int=self._rt().random().getrandbits(128), version=4)

    @property
    def logger(self) -> logging.LoggerAdapter[logging.Logger]:
        """A logger that stays silent while the workflow replays its history, so each line is
        logged once. Records carry ``workflow_id`` and ``workflow_name``."""
        return _ReplayAwareLogger(self._rt())


class _ReplayAwareLogger(logging.LoggerAdapter[logging.Logger]):
    def __init__(self, rt: WorkflowRuntimeApi) -> None:
        super().__init__(
            logging.getLogger(f"infinitic.workflows.{rt.workflow_name}"),
            {"workflow_id": rt.workflow_id, "workflow_name": rt.workflow_name},
        )
        self._rt = rt

    def log(self, level: int, msg: object, *args: Any, **kwargs: Any) -> None:
        if not self._rt.replaying:
            super().log(level, msg, *args, **kwargs)
