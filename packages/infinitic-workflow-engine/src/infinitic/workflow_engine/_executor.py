"""The workflow executor: runs workflow code for a workflow task and reports new commands.

Live instances are kept in a bounded LRU (workflow tasks are routed by workflow id), so a long
workflow is not replayed from its start at every step. A cached instance is used only when it
applied exactly the steps before the requested one and its inline values match the history;
otherwise the history is replayed on a fresh instance, which gives the same result.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Mapping, Sequence

from infinitic.common import deterministic_id, failure_from_exception, workflow_version
from infinitic.common._errors import ConfigurationError, UnknownWorkflowError
from infinitic.common._failures import FailureInfo
from infinitic.common._messages import (
    ExecuteWorkflowTask,
    WorkflowTaskCompleted,
    WorkflowTaskFailed,
)
from infinitic.workflow_engine._runtime import CheckMode, WorkflowInstance

logger = logging.getLogger("infinitic.workflow_engine")


class WorkflowExecutor:
    """Runs workflow tasks of the registered workflow classes.

    Args:
        workflows: workflow classes by workflow name: a class, or several versions of it
            (see :func:`infinitic.common.workflow_version`). New instances run the newest
            version; running instances stay on the version they started with.
        cache_size: how many live instances to keep (0 disables the cache).
        check_mode: how replayed code is compared with its history.
    """

    def __init__(
        self,
        workflows: Mapping[str, type | Sequence[type]],
        *,
        cache_size: int = 1000,
        check_mode: CheckMode = CheckMode.SIMPLE,
    ) -> None:
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
        self._cache: OrderedDict[str, WorkflowInstance] = OrderedDict()
        self.replayed_steps = 0

    def _cached(self, task: ExecuteWorkflowTask) -> WorkflowInstance | None:
        instance = self._cache.pop(task.workflow_id, None)
        if instance is None or instance.last_step != len(task.steps) - 2:
            if instance is not None:
                instance.close()
            return None
        recorded = {c.command_id: c.value for c in task.commands if c.kind == "inline"}
        for cid, value in instance.inline_values.items():
            if cid in recorded and recorded[cid] != value:
                instance.close()
                return None
        return instance

    def execute(self, task: ExecuteWorkflowTask) -> WorkflowTaskCompleted | WorkflowTaskFailed:
        """Run the last step of ``task`` (replaying the others if needed); never raises for
        errors of workflow code or of history matching: they give a WorkflowTaskFailed."""
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
        instance = self._cached(task) if self._cache_size > 0 else None
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
        if self._cache_size > 0:
            self._cache[task.workflow_id] = instance
            while len(self._cache) > self._cache_size:
                _, evicted = self._cache.popitem(last=False)
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
            message_id=deterministic_id("workflow-task-failed", task.workflow_task_id),
        )

    def forget(self, workflow_id: str) -> None:
        """Drop the live instance of a workflow, if cached."""
        instance = self._cache.pop(workflow_id, None)
        if instance is not None:
            instance.close()

    def cached_count(self) -> int:
        return len(self._cache)
