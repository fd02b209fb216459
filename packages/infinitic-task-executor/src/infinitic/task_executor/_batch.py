"""Batched methods: many tasks of a method run in one call.

A method of the implementation decorated with ``@batch(max_messages=..., max_seconds=...)``
receives a ``dict`` mapping each task id to its arguments (the argument itself when the interface
method has one parameter, else a tuple of the arguments in order) and returns a ``dict`` mapping
each task id to its result. Tasks are grouped by method and by the ``batchKey`` entry of their
meta; a group is flushed when it holds ``max_messages`` tasks or ``max_seconds`` after its first
task arrived. Each task gets its own outcome: a task without a result fails with
:class:`BatchResultMissingError` naming it, an invalid result fails only its task, and an
exception raised by the whole call fails every task of the batch; each failure then follows the
task's own retry policy.

Memory is bounded: a group never holds more than ``max_messages`` tasks, and a task message is
acknowledged only once the outcomes of its batch are published.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from infinitic.common import BatchSettings, MethodSignature
from infinitic.common.messages import ExecuteTask
from infinitic.common.tag_messages import BATCH_KEY
from infinitic.exceptions import InfiniticError, InvalidPayloadError
from infinitic.transport import Outbox

if TYPE_CHECKING:
    from infinitic.task_executor._executor import ServiceExecutor

logger = logging.getLogger("infinitic.task_executor")


class BatchResultMissingError(InfiniticError):
    """A batched method returned no result for a task of its batch."""


@dataclass
class _Group:
    method: str
    items: list[tuple[ExecuteTask, asyncio.Future[None]]] = field(default_factory=list)
    timer: asyncio.TimerHandle | None = None


class TaskBatcher:
    """Groups the tasks of the batched methods of one executor and runs them batch by batch."""

    def __init__(self, executor: ServiceExecutor) -> None:
        self._executor = executor
        self._groups: dict[tuple[str, bytes], _Group] = {}
        self._running: set[asyncio.Task[None]] = set()

    async def submit(self, m: ExecuteTask, settings: BatchSettings) -> None:
        """Add a task to its group; returns once the outcomes of its batch are published.

        Raises:
            Exception: publishing the batch's outcomes failed (the message is then not
                acknowledged and comes back).
        """
        key = (m.method_name, m.meta.get(BATCH_KEY, b""))
        group = self._groups.get(key)
        if group is None:
            group = self._groups[key] = _Group(m.method_name)
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        group.items.append((m, done))
        if len(group.items) >= settings.max_messages:
            self._flush(key)
        elif group.timer is None:
            group.timer = asyncio.get_running_loop().call_later(
                settings.max_seconds, self._flush, key
            )
        await done

    def _flush(self, key: tuple[str, bytes]) -> None:
        group = self._groups.pop(key, None)
        if group is None:
            return
        if group.timer is not None:
            group.timer.cancel()
        task = asyncio.get_running_loop().create_task(self._run(group))
        self._running.add(task)
        task.add_done_callback(self._running.discard)

    async def _run(self, group: _Group) -> None:
        try:
            out = Outbox()
            handled = [m for m, _ in group.items]
            await self._execute(group.method, handled, out)
            await self._executor.send(out, handled, False)
        except BaseException as e:
            for _, done in group.items:
                if not done.done():
                    done.set_exception(e)
            if not isinstance(e, Exception):
                raise
        else:
            for _, done in group.items:
                if not done.done():
                    done.set_result(None)

    async def _execute(self, method: str, messages: list[ExecuteTask], out: Outbox) -> None:
        ex = self._executor
        tasks: dict[str, ExecuteTask] = {}
        for m in messages:
            tasks.setdefault(m.task_id, m)  # a redelivered duplicate shares the outcome
        arguments: dict[str, Any] = {}
        sig = None
        fn: Any = None
        for task_id, m in list(tasks.items()):
            try:
                sig, fn = ex.method(m)
                args = sig.load_args(m.method_args)
            except Exception as e:
                ex.failed(m, e, out)
                del tasks[task_id]
                continue
            arguments[task_id] = args[0] if len(args) == 1 else tuple(args)
        if not tasks or sig is None:
            return
        logger.debug("batch of %d %s.%s tasks", len(tasks), ex.service_name, method)
        try:
            results = await ex.invoke(method, fn, [arguments], None, f"batch of {len(tasks)}")
            if results is None and returns_nothing(sig):
                results = dict.fromkeys(tasks)  # a method without a result: nothing to return
            if not isinstance(results, Mapping):
                raise InvalidPayloadError(
                    f"batch method {ex.service_name}.{method} must return a dict of results by "
                    f"task id (or None when the method returns nothing), got "
                    f"{type(results).__name__}"
                )
        except Exception as e:
            for m in tasks.values():
                ex.failed(m, e, out)
            return
        missing = [task_id for task_id in tasks if task_id not in results]
        for task_id, m in tasks.items():
            if task_id in missing:
                ex.failed(
                    m,
                    BatchResultMissingError(
                        f"batch method {ex.service_name}.{method} returned no result for task "
                        f"{task_id} (tasks without a result in this batch of {len(tasks)}: "
                        f"{', '.join(missing)})"
                    ),
                    out,
                )
                continue
            try:
                value = sig.dump_result(results[task_id])
            except InvalidPayloadError as e:
                ex.failed(m, e, out)
            else:
                ex.outcome(m, out, value=value)
        extra = [k for k in results if k not in tasks]
        if extra:
            logger.warning(
                "batch method %s.%s returned results for unknown tasks %s (ignored)",
                ex.service_name,
                method,
                ", ".join(map(str, extra)),
            )

    async def close(self) -> None:
        """Flush every pending group now and wait for the running batches."""
        for key in list(self._groups):
            self._flush(key)
        if self._running:
            await asyncio.gather(*self._running, return_exceptions=True)


def returns_nothing(sig: MethodSignature) -> bool:
    """True when the method is declared to return None (``-> None``)."""
    return sig.signature.return_annotation in (None, type(None), "None")
