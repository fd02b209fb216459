"""The workflow executor: runs workflow code for a workflow task and reports new commands.

Live instances are kept in a bounded LRU (workflow tasks are routed by workflow id), so a long
workflow is not replayed from its start at every step. A cached instance is used only when the
last workflow task it ran is the one whose outcome the history holds for the step before (a task
that was superseded, or run by another executor meanwhile, does not match) and its inline values
match the history; otherwise the history is replayed on a fresh instance, which gives the same
result.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping, Sequence

from infinitic.common import FailureInfo, deterministic_id, failure_from_exception, workflow_version
from infinitic.common.messages import (
    ExecuteWorkflowTask,
    WorkflowTaskCompleted,
    WorkflowTaskFailed,
)
from infinitic.exceptions import ConfigurationError, UnknownWorkflowError
from infinitic.workflow_engine._runtime import CheckMode, WorkflowInstance
from infinitic.workflow_engine._state import WorkflowState

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
    """

    def __init__(
        self,
        workflows: Mapping[str, type | Sequence[type]],
        *,
        cache_size: int = 10_000,
        check_mode: CheckMode = CheckMode.SIMPLE,
        history: HistoryLoader | None = None,
    ) -> None:
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
        # workflow id -> (the workflow task the instance ran last, the instance)
        self._cache: OrderedDict[str, tuple[str, WorkflowInstance]] = OrderedDict()
        self.replayed_steps = 0
        self.cpu_seconds = 0.0
        self.executed_tasks = 0

    def _cached(self, task: ExecuteWorkflowTask) -> WorkflowInstance | None:
        item = self._cache.pop(task.workflow_id, None)
        if item is None:
            return None
        last_task_id, instance = item
        if (
            task.previous_task_id is None
            or last_task_id != task.previous_task_id
            or instance.last_step != task.steps[-1].index - 1
            or instance.inline_digest != task.inline_digest
        ):
            instance.close()  # not this history (e.g. another worker ran a step): replay
            return None
        return instance

    async def execute(
        self, task: ExecuteWorkflowTask, history: HistoryLoader | None = None
    ) -> WorkflowTaskCompleted | WorkflowTaskFailed | None:
        """Run the last step of ``task``, replaying the history first when this executor does
        not hold the live instance; never raises for errors of workflow code or of history
        matching: they give a WorkflowTaskFailed. Returns None for an obsolete task.

        ``history`` loads the whole history for this task instead of the executor's loader
        (a state engine running the task passes the state it holds). ``cpu_seconds`` and
        ``executed_tasks`` accumulate what running code costs.
        """
        instance = self._cached(task) if self._cache_size > 0 else None
        if instance is None and not task.complete_history:
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
            task = task.model_copy(
                update={
                    "method_runs": list(state.method_runs.values()),
                    "steps": state.steps,
                    "commands": list(state.commands.values()),
                    "signals": list(state.signals.values()),
                    "complete_history": True,
                }
            )
        started = time.process_time()
        try:
            return self._execute(task, instance)
        finally:
            self.cpu_seconds += time.process_time() - started
            self.executed_tasks += 1

    def _execute(
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
        method_runs = {r.method_run_id: r for r in task.method_runs}
        commands = {c.command_id: c for c in task.commands}
        signals = {s.signal_id: s for s in task.signals}
        try:
            if instance is None:
                instance = WorkflowInstance(
                    cls,
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
                step, method_runs, commands, replaying=False, signals=signals
            )
        except Exception as e:  # history mismatches and runtime errors fail the task
            if instance is not None:
                instance.close()
            logger.warning(
                "workflow task of %s %s failed: %s", task.workflow_name, task.workflow_id, e
            )
            failure = FailureInfo(
                kind="workflow_task_failed",
                workflow_name=task.workflow_name,
                id=task.workflow_id,
                cause=failure_from_exception(e),
            )
            return self._failed(task, failure, None)
        failed = next((o for o in result.method_outcomes if o.status == "failed"), None)
        if failed is not None and failed.failure is not None:
            # An exception in workflow code fails the workflow task: the method run stays
            # resumable with retry_workflow_task once the code is fixed.
            instance.close()
            return self._failed(task, failed.failure, failed.method_run_id)
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

    def _failed(
        self, task: ExecuteWorkflowTask, failure: FailureInfo, method_run_id: str | None
    ) -> WorkflowTaskFailed:
        return WorkflowTaskFailed(
            workflow_name=task.workflow_name,
            workflow_id=task.workflow_id,
            workflow_task_id=task.workflow_task_id,
            step=task.steps[-1].index,
            failure=failure,
            method_run_id=method_run_id,
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
