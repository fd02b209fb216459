"""Loading a workflow's whole history from storage, for an executor without its live instance."""

from __future__ import annotations

import logging

from infinitic.common.messages import ExecuteWorkflowTask
from infinitic.storage import KeyValueStorage
from infinitic.transport import RetryLater
from infinitic.workflow_engine._archive import load_whole
from infinitic.workflow_engine._state import WorkflowState, decode_state, state_key
from infinitic.workflow_engine._storage_retry import with_storage_retry

logger = logging.getLogger("infinitic.workflow_engine")

#: A workflow task whose state is not stored yet comes back after this delay.
STATE_WAIT_SECONDS = 0.02


class StorageHistoryLoader:
    """Reads the state the engine stored for a workflow task.

    The engine sends a workflow task before storing the state that records it, so the stored
    state can lag behind: the task then comes back a moment later (RetryLater), it is never
    waited for here.
    """

    def __init__(self, storage: KeyValueStorage) -> None:
        self._storage = storage

    async def __call__(self, task: ExecuteWorkflowTask) -> WorkflowState | None:
        """Return the state for ``task``, or None when the task is obsolete (the instance is
        gone, or the stored state moved past the one the task was computed from).

        Raises:
            RetryLater: the state that dispatched the task is not stored yet.
        """
        key = state_key(task.workflow_name, task.workflow_id)
        stored = await with_storage_retry(self._storage.get, key)
        if stored is None:
            early = task.state_version == 0  # the first state, not stored yet
        else:
            state = decode_state(key, stored.value)
            if task.incarnation and state.incarnation not in ("", task.incarnation):
                early = False  # another instance with the same id
            elif state.running_task_id == task.workflow_task_id:
                return await load_whole(self._storage, key, state)
            else:
                early = stored.version <= task.state_version
        if early:
            raise RetryLater(
                STATE_WAIT_SECONDS,
                f"workflow task {task.workflow_task_id} of {task.workflow_name} "
                f"{task.workflow_id} before its state (version {task.state_version + 1})",
            )
        logger.debug(
            "obsolete workflow task %s of %s %s dropped",
            task.workflow_task_id,
            task.workflow_name,
            task.workflow_id,
        )
        return None
