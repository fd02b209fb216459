"""Exception classes (re-exported by :mod:`infinitic.exceptions`).

Failures crossing a process boundary travel as :class:`~infinitic.common.FailureInfo` data and are
rebuilt here as exceptions: a user exception raised in a task becomes a :class:`RemoteError`
holding its class name, message, stack and custom attributes, wrapped in a :class:`TaskFailedError`
that names the service, the method and the task id.
"""

from __future__ import annotations

from typing import Any


class InfiniticError(Exception):
    """Base class of every error raised by Infinitic.

    Attributes:
        previous: for the failure of a task's last attempt, the failure of the attempt before
            it (whose own ``previous`` is the one before, up to
            :data:`~infinitic.common.MAX_PREVIOUS_FAILURES` attempts); None otherwise.
    """

    previous: InfiniticError | None = None


class ConfigurationError(InfiniticError, ValueError):
    """A worker, client or entity is configured in a way that cannot work."""


class InvalidPayloadError(InfiniticError, ValueError):
    """A value does not fit the type declared by a service or workflow interface."""


class UnknownServiceError(InfiniticError, LookupError):
    """A message names a service this worker does not run."""


class UnknownWorkflowError(InfiniticError, LookupError):
    """A message names a workflow this worker does not run."""


class UnknownMethodError(InfiniticError, AttributeError):
    """A method that does not exist on a service or workflow was called."""


class MessageDecodeError(InfiniticError, ValueError):
    """A message could not be decoded: garbage bytes, an unknown type or an invalid body."""


class MessageTooLargeError(InfiniticError, ValueError):
    """A message is larger than its transport accepts; refused before anything is sent.

    Attributes:
        what: the message, described by what it carries (a task, a workflow method...).
        topic: where it was to be published.
        size: its encoded size, in bytes.
        limit: the largest size the transport accepts, in bytes.
    """

    def __init__(self, what: str, topic: str, size: int, limit: int) -> None:
        super().__init__(
            f"{what} is {size:,} bytes once encoded, over the limit of {limit:,} bytes of "
            f"topic {topic}: pass a reference (a key, a URL) instead of the data"
        )
        self.what = what
        self.topic = topic
        self.size = size
        self.limit = limit


class CommandOutsideWorkflowError(InfiniticError, RuntimeError):
    """A workflow-only function (a stub call, a timer, ...) was used outside workflow code."""


class StorageError(InfiniticError):
    """A storage backend failed."""


class VersionConflictError(StorageError):
    """A compare-and-set found another version than the one expected (a concurrent writer)."""

    def __init__(self, key: str, expected: int | None, actual: int | None) -> None:
        super().__init__(
            f"version conflict on key {key!r}: expected version {expected}, found {actual}"
        )
        self.key = key
        self.expected = expected
        self.actual = actual


class CorruptedValueError(StorageError):
    """A stored value could not be decoded."""

    def __init__(self, key: str, reason: str) -> None:
        super().__init__(f"stored value of key {key!r} cannot be decoded: {reason}")
        self.key = key
        self.reason = reason


class ValueTooLargeError(StorageError, ValueError):
    """A value is larger than its storage backend stores; refused before anything is sent.

    Waiting does not help: a workflow state past its backend's limit fails the instance's
    waiters and its message is dead-lettered (see the README's Limits section).

    Attributes:
        backend: the storage backend (``MySQL``, ``Redis``, ``PostgreSQL``).
        key: the key the value was to be stored under.
        size: the value's size, in bytes.
        limit: the largest value the backend stores, in bytes.
    """

    def __init__(self, backend: str, key: str, size: int, limit: int, hint: str = "") -> None:
        super().__init__(
            f"{backend} cannot store key {key!r}: its value is {size:,} bytes, over the "
            f"limit of {limit:,} bytes{hint}; keep large data out of workflows (pass a "
            "reference: a key, a URL)"
        )
        self.backend = backend
        self.key = key
        self.size = size
        self.limit = limit


class RemoteError(InfiniticError):
    """An exception raised by user code in another place (a task, a workflow method).

    Attributes:
        class_name: qualified name of the original exception class.
        message: the original exception's message.
        stack: the original traceback, as text.
        attributes: the original exception's public JSON-compatible attributes.
        cause: the failure that caused this one, if any.
    """

    def __init__(
        self,
        class_name: str,
        message: str,
        stack: str = "",
        attributes: dict[str, Any] | None = None,
        cause: InfiniticError | None = None,
    ) -> None:
        super().__init__(f"{class_name}: {message}")
        self.class_name = class_name
        self.message = message
        self.stack = stack
        self.attributes = attributes or {}
        self.cause = cause
        self.__cause__ = cause


class DeferredError(InfiniticError):
    """Base class of the errors seen by whoever waited for a task or a workflow method."""

    cause: InfiniticError | None = None


class TaskFailedError(DeferredError):
    """A task failed for good (after its retries)."""

    def __init__(
        self, service_name: str, method_name: str, task_id: str, cause: InfiniticError | None
    ) -> None:
        detail = f": {cause}" if cause is not None else ""
        super().__init__(f"task {service_name}.{method_name} (id {task_id}) failed{detail}")
        self.service_name = service_name
        self.method_name = method_name
        self.task_id = task_id
        self.cause = cause
        self.__cause__ = cause


class TaskTimedOutError(DeferredError):
    """The caller stopped waiting for a task after the timeout declared on its interface."""

    def __init__(self, service_name: str, method_name: str, task_id: str) -> None:
        super().__init__(f"task {service_name}.{method_name} (id {task_id}) timed out")
        self.service_name = service_name
        self.method_name = method_name
        self.task_id = task_id


class TaskCanceledError(DeferredError):
    """A task was canceled."""

    def __init__(self, service_name: str, method_name: str, task_id: str) -> None:
        super().__init__(f"task {service_name}.{method_name} (id {task_id}) was canceled")
        self.service_name = service_name
        self.method_name = method_name
        self.task_id = task_id


class _WorkflowMethodError(DeferredError):
    verb = ""

    def __init__(
        self,
        workflow_name: str,
        workflow_id: str,
        method_name: str | None = None,
        method_run_id: str | None = None,
        cause: InfiniticError | None = None,
    ) -> None:
        where = f"{workflow_name}.{method_name}" if method_name else workflow_name
        detail = f": {cause}" if cause is not None else ""
        super().__init__(f"workflow {where} (id {workflow_id}) {self.verb}{detail}")
        self.workflow_name = workflow_name
        self.workflow_id = workflow_id
        self.method_name = method_name
        self.method_run_id = method_run_id
        self.cause = cause
        self.__cause__ = cause


class WorkflowFailedError(_WorkflowMethodError):
    """A workflow method failed; ``cause`` holds the failure chain."""

    verb = "failed"


class WorkflowCanceledError(_WorkflowMethodError):
    """A workflow was canceled."""

    verb = "was canceled"


class WorkflowTimedOutError(_WorkflowMethodError):
    """The caller stopped waiting for a workflow method after its declared timeout."""

    verb = "timed out"


class WorkflowUnknownError(_WorkflowMethodError):
    """No such workflow instance (never started, or already terminated and removed)."""

    verb = "is unknown (never started, or already terminated)"


class WorkflowTaskFailedError(DeferredError):
    """Running the workflow code failed: an exception raised by workflow code itself (not one
    it got from awaiting a task or a workflow), or a runtime error. ``cause`` holds the original
    exception (a :class:`RemoteError` naming its class)."""

    def __init__(
        self, workflow_name: str, workflow_id: str, cause: InfiniticError | None = None
    ) -> None:
        detail = f": {cause}" if cause is not None else ""
        super().__init__(f"workflow task of {workflow_name} (id {workflow_id}) failed{detail}")
        self.workflow_name = workflow_name
        self.workflow_id = workflow_id
        self.cause = cause
        self.__cause__ = cause


class WorkflowChangedError(InfiniticError):
    """The workflow code no longer matches its recorded history (non-determinism).

    The message names the method run, the position, what the history holds and what the code did.
    """

    def __init__(self, workflow_name: str, position: str, recorded: str, found: str) -> None:
        super().__init__(
            f"workflow {workflow_name} changed: at position {position} the history holds "
            f"{recorded} but the code did {found} (if the code did not change, it is not "
            "deterministic: a clock, a random value or I/O read by workflow code gives another "
            "path at a replay; check_mode strict, and the test kit, report such calls where they "
            "are made)"
        )
        self.workflow_name = workflow_name
        self.position = position
        self.recorded = recorded
        self.found = found


class WorkflowTaskTimedOutError(InfiniticError):
    """A workflow task ran past its timeout (60 s by default; ``timeoutSeconds`` of the workflow
    in the worker's configuration). The message names the workflow, the method and the line the
    code was running when it was stopped."""

    def __init__(
        self, workflow_name: str, workflow_id: str, method: str, timeout: float, where: str
    ) -> None:
        super().__init__(
            f"workflow task of {workflow_name} (id {workflow_id}), method {method}, ran past its "
            f"timeout of {timeout:g} s (at {where}); workflow code must not block: move slow "
            "work to a service task, or raise the timeout (timeoutSeconds of the workflow in the "
            "worker's configuration, add_workflow(task_timeout=...))"
        )
        self.workflow_name = workflow_name
        self.workflow_id = workflow_id
        self.method = method
        self.timeout = timeout
        self.where = where


class NonDeterministicCallError(InfiniticError):
    """Workflow code called something that gives another result at a replay (a clock, a random
    value, I/O), found by the strict check (``check_mode="strict"`` and the test kit).

    The message names the call, the workflow, the method, the line, and what to use instead.
    """

    def __init__(self, call: str, workflow_name: str, method: str, where: str, use: str) -> None:
        super().__init__(
            f"{call} in workflow {workflow_name}, method {method}, at {where}, is not "
            f"deterministic: a replay of the history would get another result; {use}"
        )
        self.call = call
        self.workflow_name = workflow_name
        self.method = method
        self.where = where
        self.use = use


class MessageDeadLetteredError(InfiniticError):
    """A message something waited for was dead-lettered: no worker could handle it.

    ``topic`` is where it was consumed and ``reason`` the last error; the message itself is on
    the topic's dead-letter twin (``<topic>-dlq``), where it can be inspected or replayed.
    """

    def __init__(self, topic: str, reason: str) -> None:
        super().__init__(f"a message on {topic} was dead-lettered: {reason}")
        self.topic = topic
        self.reason = reason


PUBLIC_MODULE = "infinitic.exceptions"
"""The module users import these classes from, and the one their names show."""


def _present_publicly() -> None:
    """Give every public exception class of this module :data:`PUBLIC_MODULE` as its module.

    Tracebacks, reprs and failures (``FailureInfo.class_name``) name a class by its
    ``__module__``: without this they would say ``infinitic.common._errors.ValueTooLargeError``,
    a private path nobody can import from in good faith.
    """
    for name, value in list(globals().items()):
        if (
            isinstance(value, type)
            and issubclass(value, BaseException)
            and not name.startswith("_")
            and value.__module__ == __name__
        ):
            value.__module__ = PUBLIC_MODULE


_present_publicly()
