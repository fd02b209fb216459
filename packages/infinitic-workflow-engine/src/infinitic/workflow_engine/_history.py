"""Loading a workflow's whole history from storage, for an executor without its live instance."""

from __future__ import annotations

import asyncio
import logging
import time

from infinitic.common._messages import ExecuteWorkflowTask
from infinitic.storage import KeyValueStorage
from infinitic.workflow_engine._state import WorkflowState, decode_state, state_key
from infinitic.workflow_engine._storage_retry import with_storage_retry

logger = logging.getLogger("infinitic.workflow_engine")


class StorageHistoryLoader:
    """Reads the state the engine stored for a workflow task.

    The engine sends a workflow task before storing the state that records it, so the state
    can briefly lag behind: the loader polls for up to ``wait_seconds``.
    """

    def __init__(self, storage: KeyValueStorage, *, wait_seconds: float = 10.0) -> None:
        self._storage = storage
        self._wait = wait_seconds

    async def __call__(self, task: ExecuteWorkflowTask) -> WorkflowState | None:
        """Return the state for ``task``, or None when the task is obsolete (the instance is
        gone, the task already completed, or its state never got stored: then the engine
        processes its input again and sends the task again)."""
        key = state_key(task.workflow_name, task.workflow_id)
        index = task.steps[-1].index
        deadline = time.monotonic() + self._wait
        pause = 0.005
        while True:
            stored = await with_storage_retry(self._storage.get, key)
            if stored is None:
                return None
            state = decode_state(key, stored.value)
            if state.running_task_id == task.workflow_task_id:
                return state
            if len(state.steps) > index + 1 or (
                len(state.steps) == index + 1
                and state.running_task_id is None
                and state.failed_task is None
            ):
                return None  # this step already completed
            if time.monotonic() > deadline:
                logger.warning(
                    "workflow task %s of %s %s: its state was not stored within %.0fs; dropped",
                    task.workflow_task_id,
                    task.workflow_name,
                    task.workflow_id,
                    self._wait,
                )
                return None
            await asyncio.sleep(pause)
            pause = min(pause * 2, 0.25)
