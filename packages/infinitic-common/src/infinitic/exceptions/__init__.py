"""The exception hierarchy of Infinitic for Python.

Every error raised by Infinitic derives from :class:`InfiniticError`. Errors that a caller sees
when something it waited for did not complete (a task, a child workflow, a workflow method) derive
from :class:`DeferredError`; they carry the whole failure chain as data, never as pickled objects.
"""

from infinitic.common._errors import (
    CommandOutsideWorkflowError,
    ConfigurationError,
    CorruptedValueError,
    DeferredError,
    InfiniticError,
    InvalidPayloadError,
    MessageDeadLetteredError,
    MessageDecodeError,
    MessageTooLargeError,
    NonDeterministicCallError,
    RemoteError,
    StorageError,
    TaskCanceledError,
    TaskFailedError,
    TaskTimedOutError,
    UnknownMethodError,
    UnknownServiceError,
    UnknownWorkflowError,
    VersionConflictError,
    WorkflowCanceledError,
    WorkflowChangedError,
    WorkflowFailedError,
    WorkflowTaskFailedError,
    WorkflowTaskTimedOutError,
    WorkflowTimedOutError,
    WorkflowUnknownError,
)

__all__ = [
    "CommandOutsideWorkflowError",
    "ConfigurationError",
    "CorruptedValueError",
    "DeferredError",
    "InfiniticError",
    "InvalidPayloadError",
    "MessageDeadLetteredError",
    "MessageDecodeError",
    "MessageTooLargeError",
    "NonDeterministicCallError",
    "RemoteError",
    "StorageError",
    "TaskCanceledError",
    "TaskFailedError",
    "TaskTimedOutError",
    "UnknownMethodError",
    "UnknownServiceError",
    "UnknownWorkflowError",
    "VersionConflictError",
    "WorkflowCanceledError",
    "WorkflowChangedError",
    "WorkflowFailedError",
    "WorkflowTaskFailedError",
    "WorkflowTaskTimedOutError",
    "WorkflowTimedOutError",
    "WorkflowUnknownError",
]
