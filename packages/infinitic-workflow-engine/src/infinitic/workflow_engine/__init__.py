"""Infinitic for Python: the workflow command handler, state engine, timers and the
deterministic workflow runtime."""

import importlib.metadata

from infinitic.workflow_engine._engine import WorkflowStateEngine
from infinitic.workflow_engine._events import workflow_task_events
from infinitic.workflow_engine._executor import WorkflowExecutor
from infinitic.workflow_engine._handlers import (
    WorkflowCommandHandler,
    WorkflowDelayHandler,
    WorkflowEventHandler,
    WorkflowTaskEventHandler,
)
from infinitic.workflow_engine._history import StorageHistoryLoader
from infinitic.workflow_engine._loop import WorkflowEventLoop
from infinitic.workflow_engine._replayer import replay_history, replay_properties
from infinitic.workflow_engine._runtime import CheckMode, WorkflowInstance
from infinitic.workflow_engine._state import (
    WorkflowState,
    decode_state,
    encode_state,
    state_key,
)
from infinitic.workflow_engine._storage_retry import StorageRetryPolicy, retry_storage
from infinitic.workflow_engine._task_runner import Isolation

__version__: str = importlib.metadata.version("infinitic-workflow-engine")

__all__ = [
    "CheckMode",
    "Isolation",
    "StorageHistoryLoader",
    "StorageRetryPolicy",
    "WorkflowCommandHandler",
    "WorkflowDelayHandler",
    "WorkflowEventHandler",
    "WorkflowEventLoop",
    "WorkflowExecutor",
    "WorkflowInstance",
    "WorkflowState",
    "WorkflowStateEngine",
    "WorkflowTaskEventHandler",
    "decode_state",
    "encode_state",
    "replay_history",
    "replay_properties",
    "retry_storage",
    "state_key",
    "workflow_task_events",
]
