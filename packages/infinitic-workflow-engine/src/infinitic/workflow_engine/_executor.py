"""The workflow executor: runs workflow code for a workflow task and reports new commands.

Live instances are kept in a bounded LRU (workflow tasks are routed by workflow id), so a long
workflow is not replayed from its start at every step. A cached instance is used only when the
last workflow task it ran is the one whose outcome the history holds for the step before (a task
that was superseded, or run by another executor meanwhile, does not match) and its inline values
match the history; otherwise the history is replayed on a fresh instance, which gives the same
result.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping, Sequence

from infinitic.common import (
    FailureInfo,
    RetryPolicy,
    deterministic_id,
    failure_from_exception,
    retry_policy,
    tracing,
    workflow_version,
)
from infinitic.common.messages import (
    CommandRecord,
    ExecuteWorkflowTask,
    MethodRun,
    SignalRecord,
    WorkflowTaskCompleted,
    WorkflowTaskFailed,
)
from infinitic.exceptions import (
    ConfigurationError,
    NonDeterministicCallError,
    UnknownWorkflowError,
    WorkflowTaskTimedOutError,
)
from infinitic.workflow_engine._nondeterminism import StrictCheck
from infinitic.workflow_engine._runtime import CheckMode, StepResult, WorkflowInstance
from infinitic.workflow_engine._state import WorkflowState
from infinitic.workflow_engine._task_runner import (
    DEFAULT_BLOCKING_THRESHOLD,
    DEFAULT_WORKFLOW_TASK_TIMEOUT,
    Isolation,
    WorkflowTaskRunner,
)
from infinitic.workflow_engine._watchdog import GuardedRun, StepInterrupted

logger = logging.getLogger("infinitic.workflow_engine")

#: Loads the whole history of a workflow task (None: the task is obsolete).
HistoryLoader = Callable[[ExecuteWorkflowTask], Awaitable[WorkflowState | None]]


class WorkflowExecutor:
    """Runs workflow tasks of the registered workflow classes.

    Args:
        workflows: workflow classes by workflow name: a class, or several versions of it
            (see :func:`infinitic.common.workflow_version`). New instances run the newest
            version; running instances stay on the version they started with.
        cache_size: how many live instances to keep (0 disables the cache).
        check_mode: how replayed code is compared with its history.
        history: loads the whole history when a task carries only its step and the live
            instance is not cached (e.g. :class:`StorageHistoryLoader`).
        task_timeout: seconds a workflow task's code may run (replay included) before it is
            stopped and fails with WorkflowTaskTimedOutError (60, as in Infinitic; None: no
            limit).
        task_retry: the retry policy of failed workflow tasks (an exception raised by workflow
            code, not one it got from a task or a child; a timeout); None: the one declared
            with ``@retry`` on the workflow's method or class, else no retry.
        isolation: where workflow code runs (:class:`Isolation`: on the event loop, on
            threads, or on the loop until a step blocks).
        blocking_threshold: seconds of code without yielding reported as blocking (a warning
            naming the workflow, the method and the line).
        strict_check: report non-deterministic calls of workflow code at the call (a clock,
            random values, UUIDs, sleeps, I/O); None: with ``CheckMode.STRICT``.
    """

    def __init__(
        self,
        workflows: Mapping[str, type | Sequence[type]],
        *,
        cache_size: int = 10_000,
        check_mode: CheckMode = CheckMode.SIMPLE,
        history: HistoryLoader | None = None,
        task_timeout: float | None = DEFAULT_WORKFLOW_TASK_TIMEOUT,
        task_retry: RetryPolicy | None = None,
        isolation: Isolation | str = Isolation.AUTO,
        blocking_threshold: float | None = DEFAULT_BLOCKING_THRESHOLD,
        strict_check: bool | None = None,
    ) -> None:
        for what, value in (
            ("task_timeout", task_timeout),
            ("blocking_threshold", blocking_threshold),
        ):
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, int | float) or value <= 0
            ):
                raise ConfigurationError(f"{what} must be a number of seconds > 0, got {value!r}")
        if task_retry is not None and not isinstance(task_retry, RetryPolicy):
            raise ConfigurationError(f"task_retry must be a RetryPolicy, got {task_retry!r}")
        try:
            isolation = Isolation(isolation)
        except ValueError:
            raise ConfigurationError(
                f"isolation must be one of {[i.value for i in Isolation]}, got {isolation!r}"
            ) from None
        self._task_timeout = None if task_timeout is None else float(task_timeout)
        self._task_retry = task_retry
        self._strict = check_mode is CheckMode.STRICT if strict_check is None else strict_check
        self._history = history
        self._versions: dict[str, dict[int, type]] = {}
        for name, classes in workflows.items():
            versions = self._versions[name] = {}
            for cls in [classes] if isinstance(classes, type) else classes:
                version = workflow_version(cls)
                if version in versions:
                    raise ConfigurationError(
                        f"workflow {name}: {versions[version].__name__} and {cls.__name__} are "
                        f"both version {version}"
                    )
                versions[version] = cls
        self._cache_size = cache_size
        self._check_mode = check_mode
        self._runners = {
            name: WorkflowTaskRunner(name, isolation, blocking_threshold) for name in self._versions
        }
        # workflow id -> (the workflow task the instance ran last, the instance)
        self._cache: OrderedDict[str, tuple[str, WorkflowInstance]] = OrderedDict()
        self.replayed_steps = 0
        self.cpu_seconds = 0.0
        self.executed_tasks = 0

    @property
    def task_timeout(self) -> float | None:
        """Seconds a workflow task's code may run (None: no limit)."""
        return self._task_timeout

    @property
    def task_retry(self) -> RetryPolicy | None:
        """The configured retry policy of workflow tasks (None: the declared one, if any)."""
        return self._task_retry

    def _cached(
        self, task: ExecuteWorkflowTask
    ) -> tuple[WorkflowInstance | None, tuple[str, WorkflowInstance] | None]:
        """The live instance that ran the step before ``task``'s, or else a live instance
        that is behind (it ran an earlier step: another engine or executor ran the ones
        since), with the workflow task it ran last: it may catch up (see :meth:`_caught_up`)."""
        item = self._cache.pop(task.workflow_id, None)
        if item is None:
            return None, None
        last_task_id, instance = item
        previous = task.steps[-1].index - 1
        if (
            task.previous_task_id is not None
            and last_task_id == task.previous_task_id
            and instance.last_step == previous
            and instance.inline_digest == task.inline_digest
        ):
            return instance, None
        if task.previous_task_id is not None and instance.last_step < previous:
            return None, item
        instance.close()  # not this history: replay
        return None, None

    @staticmethod
    def _caught_up(
        task: ExecuteWorkflowTask, behind: tuple[str, WorkflowInstance]
    ) -> WorkflowInstance | None:
        """``behind``'s instance if the whole history ``task`` holds ended its last step with
        the workflow task the instance ran last: it then replays only the steps since (two
        worker processes on a broker without key affinity run the steps of one instance in
        turn; each replayed the whole history, a cost growing as its square)."""
        last_task_id, instance = behind
        steps = task.steps
        last = instance.last_step
        at = last - steps[0].index if steps else -1  # a history may start after archived steps
        if (
            0 <= at < len(steps)
            and steps[at].index == last
            and steps[at].task_id is not None
            and steps[at].task_id == last_task_id
        ):
            return instance
        instance.close()
        return None

    async def execute(
        self,
        task: ExecuteWorkflowTask,
        history: HistoryLoader | None = None,
        recent: WorkflowState | None = None,
    ) -> WorkflowTaskCompleted | WorkflowTaskFailed | None:
        """Run the last step of ``task``, replaying the history first when this executor does
        not hold the live instance; never raises for errors of workflow code, of history
        matching or a timeout: they give a WorkflowTaskFailed (with a ``retry_delay`` when the
        retry policy gives the task another try). Returns None for an obsolete task.

        ``history`` loads the whole history for this task instead of the executor's loader
        (a state engine running the task passes the state it holds), and ``recent`` is that
        state without its archived chunks, enough for a live instance that is behind to catch
        up when it misses no archived step. ``cpu_seconds`` and ``executed_tasks`` accumulate
        what running code costs.
        """
        instance, behind = self._cached(task) if self._cache_size > 0 else (None, None)
        given = task
        if (
            behind is not None
            and not task.complete_history
            and recent is not None
            and recent.archived_steps <= behind[1].last_step
        ):
            # The steps since the instance's last one are all in the state at hand (an
            # archived chunk holds only older ones): no need to read the whole history.
            partial = _with_history(task, recent, complete=False)
            instance, behind = self._caught_up(partial, behind), None
            if instance is not None:
                task = partial
        if instance is None and not task.complete_history:
            whole = None
            try:
                whole = await self._whole(task, history)
            finally:
                if whole is None and behind is not None:  # obsolete, or unreadable
                    behind[1].close()
            if whole is None:
                return None
            task = whole
        if behind is not None:
            instance = self._caught_up(task, behind)
        self.executed_tasks += 1
        try:
            return await self._traced(task, instance)
        except _NeedWholeHistory:  # a catch-up on the state at hand failed: replay it all
            whole = await self._whole(given, history)
            return None if whole is None else await self._traced(whole, None)

    async def _traced(
        self, task: ExecuteWorkflowTask, instance: WorkflowInstance | None
    ) -> WorkflowTaskCompleted | WorkflowTaskFailed:
        if tracing.recording():
            attributes = tracing.message_attributes(task)
            method = _step_method(task)[1]
            if method != "?":  # known when the task carries the method run it delivers to
                attributes["infinitic.method.name"] = method
            name = f"workflow task {task.workflow_name}"
            with tracing.internal(name, attributes):
                return await self._execute(task, instance)
        return await self._execute(task, instance)

    async def _whole(
        self, task: ExecuteWorkflowTask, history: HistoryLoader | None
    ) -> ExecuteWorkflowTask | None:
        """``task`` with the whole history (None: the task is obsolete)."""
        load = history or self._history
        if load is None:
            raise ConfigurationError("this executor needs a history loader (storage)")
        state = await load(task)
        if state is None:
            logger.info(
                "obsolete workflow task %s of %s %s dropped",
                task.workflow_task_id,
                task.workflow_name,
                task.workflow_id,
            )
            return None
        return _with_history(task, state, complete=True)

    async def _execute(
        self, task: ExecuteWorkflowTask, instance: WorkflowInstance | None
    ) -> WorkflowTaskCompleted | WorkflowTaskFailed:
        versions = self._versions.get(task.workflow_name)
        step = task.steps[-1]
        if not versions:
            raise UnknownWorkflowError(f"this worker does not run workflow {task.workflow_name!r}")
        version = max(versions) if task.workflow_version is None else task.workflow_version
        cls = versions.get(version)
        if cls is None:
            failure = failure_from_exception(
                UnknownWorkflowError(
                    f"workflow {task.workflow_name} {task.workflow_id} runs version {version}, "
                    f"which this worker does not have (it has {sorted(versions)}); deploy it"
                )
            )
            return self._failed(task, failure, None)
        guarded = GuardedRun(task.workflow_name, task.workflow_id, "?", self._task_timeout, None)
        code = _TaskCode(task, cls, instance, self._check_mode, self._strict, guarded)
        try:
            ran = await self._runners[task.workflow_name].run(code.run, guarded)
        except _NeedWholeHistory:
            raise
        except StepInterrupted:
            run_id, method = _step_method(task)
            if guarded.method == "?":
                guarded.method = method
            error = WorkflowTaskTimedOutError(
                task.workflow_name,
                task.workflow_id,
                guarded.method,
                self._task_timeout or 0.0,
                guarded.where,
            )
            logger.warning("%s", error)
            return self._retry_or_fail(task, cls, error, method, run_id)
        except Exception as e:  # history mismatches and runtime errors fail the task
            logger.warning(
                "workflow task of %s %s failed: %s", task.workflow_name, task.workflow_id, e
            )
            return self._retry_or_fail(task, cls, e, _step_method(task)[1], None)
        finally:
            self.cpu_seconds += code.cpu_seconds
            self.replayed_steps += code.replayed_steps
        instance, result = ran
        failed = next((o for o in result.method_outcomes if o.status == "failed"), None)
        violation = code.violation
        if failed is not None and failed.failure is not None:
            # An exception in workflow code fails the workflow task: the method run stays
            # resumable with retry_workflow_task once the code is fixed (or the retry policy
            # runs it again).
            instance.close()
            raised = instance.errors.get(failed.method_run_id)
            if failed.failure.kind != "workflow_task_failed" or raised is None:
                return self._failed(task, failed.failure, failed.method_run_id)
            runs = {r.method_run_id: r for r in task.method_runs}
            failed_method = runs[failed.method_run_id].method_name
            return self._retry_or_fail(
                task, cls, raised, failed_method, failed.method_run_id, failed.failure
            )
        if violation is not None:  # reported at the call, and caught by workflow code
            instance.close()
            return self._retry_or_fail(task, cls, violation, _step_method(task)[1], None)
        if self._cache_size > 0 and not instance.finished():
            self._cache[task.workflow_id] = (task.workflow_task_id, instance)
            while len(self._cache) > self._cache_size:
                _, (_, evicted) = self._cache.popitem(last=False)
                evicted.close()
        else:
            instance.close()
        return WorkflowTaskCompleted(
            workflow_name=task.workflow_name,
            workflow_id=task.workflow_id,
            workflow_task_id=task.workflow_task_id,
            step=step.index,
            new_commands=result.new_commands,
            method_outcomes=result.method_outcomes,
            workflow_version=version,
            inline_digest=instance.inline_digest,
            state_version=task.state_version,
            incarnation=task.incarnation,
            message_id=deterministic_id("workflow-task-completed", task.workflow_task_id),
        )

    def _retry_or_fail(
        self,
        task: ExecuteWorkflowTask,
        cls: type,
        error: BaseException,
        method: str,
        method_run_id: str | None,
        failure: FailureInfo | None = None,
    ) -> WorkflowTaskFailed:
        """The failure of a workflow task that raised ``error``, with the delay of its next try
        when the retry policy gives one (the configured one, else one declared with @retry on
        the workflow's method or class, else none, as in Infinitic)."""
        if failure is None:
            failure = FailureInfo(
                kind="workflow_task_failed",
                workflow_name=task.workflow_name,
                id=task.workflow_id,
                cause=failure_from_exception(error),
            )
        policy = self._task_retry or retry_policy(cls, method)
        delay = policy.delay(task.retry_index, error) if policy is not None else None
        failed = self._failed(task, failure, method_run_id, delay)
        if delay is not None:
            logger.warning(
                "workflow task of %s %s (method %s) failed, retry %d in %.3g s: %s",
                task.workflow_name,
                task.workflow_id,
                method,
                task.retry_index + 1,
                delay,
                error,
            )
        return failed

    def _failed(
        self,
        task: ExecuteWorkflowTask,
        failure: FailureInfo,
        method_run_id: str | None,
        retry_delay: float | None = None,
    ) -> WorkflowTaskFailed:
        return WorkflowTaskFailed(
            workflow_name=task.workflow_name,
            workflow_id=task.workflow_id,
            workflow_task_id=task.workflow_task_id,
            step=task.steps[-1].index,
            failure=failure,
            method_run_id=method_run_id,
            retry_index=task.retry_index,
            retry_delay=retry_delay,
            state_version=task.state_version,
            incarnation=task.incarnation,
            message_id=deterministic_id("workflow-task-failed", task.workflow_task_id),
        )

    def forget(self, workflow_id: str) -> None:
        """Drop the live instance of a workflow, if cached."""
        item = self._cache.pop(workflow_id, None)
        if item is not None:
            item[1].close()

    def cached_count(self) -> int:
        return len(self._cache)


def step_method_run(task: ExecuteWorkflowTask) -> str | None:
    """The method run the last step of ``task`` delivers to, when it is one run only."""
    commands = {c.command_id: c for c in task.commands}
    signals = {s.signal_id: s for s in task.signals}
    owners: set[str | None] = set()
    for delivery in task.steps[-1].deliveries:
        if delivery.kind == "method":
            owners.add(delivery.id)
            continue
        command_id = delivery.id
        if delivery.kind == "signal":
            signal = signals.get(delivery.id)
            command_id = signal.command_id if signal is not None else ""
        record = commands.get(command_id)
        owners.add(record.method_run_id if record is not None else None)
    return owners.pop() if len(owners) == 1 else None


def _step_method(task: ExecuteWorkflowTask) -> tuple[str | None, str]:
    """The method run the last step of ``task`` delivers to (when one) and its method name."""
    run_id = step_method_run(task)
    runs = {r.method_run_id: r for r in task.method_runs}
    return run_id, runs[run_id].method_name if run_id in runs else "?"


class _TaskCode:
    """The code of one workflow task, run wherever its runner says (maybe on another thread),
    watched as ``guarded``: it touches its instance only, never the executor's cache or
    counters."""

    def __init__(
        self,
        task: ExecuteWorkflowTask,
        cls: type,
        instance: WorkflowInstance | None,
        check_mode: CheckMode,
        strict: bool,
        guarded: GuardedRun,
    ) -> None:
        self._task = task
        self._cls = cls
        self._instance = instance
        self._check_mode = check_mode
        self._strict = strict
        self._guarded = guarded
        self.cpu_seconds = 0.0
        self.replayed_steps = 0
        self.violation: NonDeterministicCallError | None = None

    def run(self) -> tuple[WorkflowInstance, StepResult]:
        """Replay the history on a new instance if none is given, then run the last step.

        Raises:
            Exception: a history mismatch or a runtime error (the instance is closed).
        """
        task = self._task
        method_runs = {r.method_run_id: r for r in task.method_runs}
        commands = {c.command_id: c for c in task.commands}
        signals = {s.signal_id: s for s in task.signals}
        # The watchdog read the thread's CPU clock as it called this (a system call each).
        started = self._guarded.cpu_started
        check = StrictCheck(task.workflow_name) if self._strict else None
        instance = self._instance
        try:
            with check if check is not None else contextlib.nullcontext():
                if instance is not None and instance.last_step < task.steps[-1].index - 1:
                    instance = self._catch_up(instance, method_runs, commands, signals)
                if instance is None and not task.complete_history:
                    raise _NeedWholeHistory()  # part of the history only: no replay from it
                if instance is None:
                    instance = WorkflowInstance(
                        self._cls,
                        task.workflow_name,
                        task.workflow_id,
                        frozenset(task.tags),
                        task.meta,
                        self._check_mode,
                    )
                    for past in task.steps[:-1]:
                        instance.apply_step(
                            past, method_runs, commands, replaying=True, signals=signals
                        )
                        self.replayed_steps += 1
                result = instance.apply_step(
                    task.steps[-1], method_runs, commands, replaying=False, signals=signals
                )
            return instance, result
        except BaseException:
            if instance is not None:
                instance.close()
            raise
        finally:
            self.cpu_seconds = time.thread_time() - started
            if check is not None:
                self.violation = check.violation

    def _catch_up(
        self,
        instance: WorkflowInstance,
        method_runs: Mapping[str, MethodRun],
        commands: Mapping[str, CommandRecord],
        signals: Mapping[str, SignalRecord],
    ) -> WorkflowInstance | None:
        """Replay on ``instance`` the steps it did not run, up to the one before the task's
        (the task holds the whole history); None, with the instance closed, if it then does
        not match the history: the caller replays it all on a new instance."""
        task = self._task
        last = task.steps[-1].index
        try:
            for past in task.steps:
                if instance.last_step < past.index < last:
                    instance.apply_step(
                        past, method_runs, commands, replaying=True, signals=signals
                    )
                    self.replayed_steps += 1
        except Exception:
            logger.debug(
                "a live instance of %s could not catch up", task.workflow_id, exc_info=True
            )
            instance.close()
            return None
        if instance.last_step != last - 1 or instance.inline_digest != task.inline_digest:
            instance.close()
            return None
        return instance


class _NeedWholeHistory(Exception):
    """A live instance could not catch up on the part of the history a task held: the task
    runs again on the whole history."""


def _with_history(
    task: ExecuteWorkflowTask, state: WorkflowState, *, complete: bool
) -> ExecuteWorkflowTask:
    """``task`` with the history ``state`` holds (the whole of it if ``complete``)."""
    return task.model_copy(
        update={
            "method_runs": list(state.method_runs.values()),
            "steps": state.steps,
            "commands": list(state.commands.values()),
            "signals": list(state.signals.values()),
            "complete_history": complete,
        }
    )
