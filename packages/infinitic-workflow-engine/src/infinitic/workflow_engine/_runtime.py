"""The runtime of one workflow instance: runs its methods step by step on a deterministic loop.

A workflow's history is a list of steps (workflow tasks). Each step delivers things to the code,
in order: a method run starting, or the result of a command. Replaying a history means applying
its steps one by one; the commands the code creates during a replayed step must be the ones the
history recorded at that step, at the same positions, or the workflow changed and the task fails
with an error naming the position, what the history holds and what the code did.
"""

from __future__ import annotations

import asyncio
import contextvars
import enum
import hashlib
import random
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypedDict, TypeVar

from pydantic import TypeAdapter

from infinitic.common import (
    Deferred,
    Receiving,
    command_id,
    exception_from_failure,
    failure_from_exception,
    method_failure,
    method_signature,
    pack,
    set_runtime,
)
from infinitic.common.messages import (
    ChildWorkflowCommand,
    CommandRecord,
    InlineCommand,
    MethodCommand,
    MethodOutcomeInfo,
    MethodRun,
    PatchCommand,
    ReceiveCommand,
    SignalCommand,
    SignalRecord,
    Step,
    TaskCommand,
    TimerCommand,
)
from infinitic.exceptions import InfiniticError, WorkflowChangedError
from infinitic.workflow_engine import _nondeterminism as nondeterminism
from infinitic.workflow_engine._deferred_check import check_no_deferred_in_properties
from infinitic.workflow_engine._loop import WorkflowEventLoop

_ANY: TypeAdapter[Any] = TypeAdapter(Any)
_C = TypeVar("_C", bound=CommandRecord)


class CheckMode(enum.Enum):
    """How strictly replayed code is compared with its history.

    NONE: no check. SIMPLE: command kinds and names at each position. STRICT: also arguments.
    """

    NONE = "none"
    SIMPLE = "simple"
    STRICT = "strict"


class _Changed(BaseException):
    """Unwinds workflow code after a history mismatch (not catchable by ``except Exception``)."""

    def __init__(self, instance: WorkflowInstance, error: WorkflowChangedError) -> None:
        super().__init__(str(error))
        self.error = error
        if instance.fatal is None:
            instance.fatal = error


@dataclass
class _MethodRunContext:
    run: MethodRun
    next_position: int = 0
    task: asyncio.Task[None] | None = None


class _Place(TypedDict):
    """Where workflow code creates a command: the fields every command record starts with."""

    command_id: str
    method_run_id: str
    position: int
    step: int


@dataclass
class _Pending:
    record: CommandRecord
    deferred: Deferred[Any] | None = None
    timer: asyncio.TimerHandle | None = None
    load_result: Callable[[Any], Any] = field(default=lambda v: v)


class _TaskDeferred(Deferred[Any]):
    """The Deferred of a task: ``retry_tasks`` may run the task again after its outcome was
    handed to the code, and the Deferred then waits for the new one."""

    load_result: Callable[[Any], Any]


_current_method: contextvars.ContextVar[_MethodRunContext | None] = contextvars.ContextVar(
    "infinitic_method_run", default=None
)


@dataclass
class StepResult:
    """What a step produced: the new commands and the method runs that ended."""

    new_commands: list[CommandRecord]
    method_outcomes: list[MethodOutcomeInfo]


class WorkflowInstance:
    """A live workflow instance (implements :class:`infinitic.common.WorkflowRuntimeApi`)."""

    def __init__(
        self,
        workflow_cls: type,
        workflow_name: str,
        workflow_id: str,
        tags: frozenset[str],
        meta: Mapping[str, bytes],
        check_mode: CheckMode = CheckMode.SIMPLE,
    ) -> None:
        self.workflow_cls = workflow_cls
        self.workflow_name = workflow_name
        self.workflow_id = workflow_id
        self.tags = tags
        self.meta: Mapping[str, bytes] = dict(meta)
        self.check_mode = check_mode
        self.loop = WorkflowEventLoop(self)  # type: ignore[abstract]
        self.last_step = -1
        self.inline_values: dict[str, Any] = {}
        self.inline_digest = ""
        self._methods: dict[str, _MethodRunContext] = {}
        self._pending: dict[str, _Pending] = {}
        # settled task Deferreds the code may still hold (a retried task renews its own)
        self._settled: weakref.WeakValueDictionary[str, _TaskDeferred] = (
            weakref.WeakValueDictionary()
        )
        self._step = -1
        self._replaying = False
        self._recorded: Mapping[str, CommandRecord] = {}
        self._created: list[CommandRecord] = []
        self._outcomes: list[MethodOutcomeInfo] = []
        self._in_inline = False
        self._receivers: dict[str, Receiving[Any]] = {}
        self._rng: random.Random | None = None  # seeded by the id at its first use
        self.errors: dict[str, Exception] = {}  # method run id -> what its code raised
        self.fatal: WorkflowChangedError | None = None
        context = contextvars.copy_context()
        context.run(set_runtime, self)
        self.instance = context.run(self._instantiate)

    def _instantiate(self) -> Any:
        cls: Any = self.workflow_cls
        obj = cls.__new__(cls)
        obj._infinitic_runtime = self  # set before __init__, so __init__ may read the context
        obj.__init__()
        return obj

    def finished(self) -> bool:
        """True once every method run it started has returned or raised (nothing can run any
        more: the instance ends with this step)."""
        return bool(self._methods) and all(
            ctx.task is not None and ctx.task.done() for ctx in self._methods.values()
        )

    # -- driving --------------------------------------------------------------------------------

    def apply_step(
        self,
        step: Step,
        method_runs: Mapping[str, MethodRun],
        commands: Mapping[str, CommandRecord],
        *,
        replaying: bool,
        signals: Mapping[str, SignalRecord] | None = None,
    ) -> StepResult:
        """Apply one step of the history and return what it produced.

        Raises:
            WorkflowChangedError: replayed code does not match the history.
        """
        self._step = step.index
        self._replaying = replaying
        self._recorded = commands
        self._created = []
        self._outcomes = []
        self.loop.set_time(step.instant)
        for delivery in step.deliveries:
            if delivery.kind == "method":
                self._start_method(method_runs[delivery.id])
            elif delivery.kind == "signal":
                self._deliver_signal((signals or {})[delivery.id])
            elif delivery.kind == "retry":
                self._renew(commands[delivery.id])
            else:
                self._deliver(commands[delivery.id])
            self._run()
        if replaying and self.check_mode is not CheckMode.NONE:
            created = {c.command_id for c in self._created}
            for record in commands.values():
                if record.step == step.index and record.command_id not in created:
                    raise WorkflowChangedError(
                        self.workflow_name,
                        self._where(record.method_run_id, record.position),
                        record.describe(),
                        "nothing",
                    )
        check_no_deferred_in_properties(self.workflow_name, self.instance)
        self.last_step = step.index
        inlined = [
            (c.command_id, self.inline_values.get(c.command_id))
            for c in self._created
            if isinstance(c, InlineCommand)
        ]
        if inlined:  # chained, so a cached instance can be checked against the history
            self.inline_digest = hashlib.sha256(
                self.inline_digest.encode() + pack(inlined)
            ).hexdigest()[:32]
        new = [c for c in self._created if c.command_id not in commands]
        return StepResult(new, self._outcomes)

    def _run(self) -> None:
        self.loop.run_until_idle()
        if self.fatal is not None:
            raise self.fatal

    def _where(self, method_run_id: str, position: int) -> str:
        ctx = self._methods.get(method_run_id)
        name = ctx.run.method_name if ctx else method_run_id
        return f"{name}#{position}"

    # -- method runs ----------------------------------------------------------------------------

    def _start_method(self, run: MethodRun) -> None:
        if run.method_run_id in self._methods:
            return
        ctx = _MethodRunContext(run)
        self._methods[run.method_run_id] = ctx
        context = contextvars.copy_context()
        context.run(set_runtime, self)
        context.run(_current_method.set, ctx)
        ctx.task = self.loop.create_task(self._run_method(ctx), context=context)

    async def _run_method(self, ctx: _MethodRunContext) -> None:
        run = ctx.run
        sig = method_signature(self.workflow_cls, run.method_name, "workflow", self.workflow_name)
        try:
            args = sig.load_args(run.args)
            value = await getattr(self.instance, run.method_name)(*args)
            outcome = MethodOutcomeInfo(
                method_run_id=run.method_run_id, status="completed", value=sig.dump_result(value)
            )
        except Exception as e:
            self.errors[run.method_run_id] = e  # for the retry policy (ignored exceptions)
            outcome = MethodOutcomeInfo(
                method_run_id=run.method_run_id,
                status="failed",
                failure=method_failure(e, self.workflow_name, self.workflow_id),
            )
        if not self._replaying and run.status == "ongoing":
            self._outcomes.append(outcome)

    def current_method_name(self) -> str:
        return self._context().run.method_name

    def _context(self) -> _MethodRunContext:
        ctx = _current_method.get()
        if ctx is None:
            raise InfiniticError("no workflow method is running in this context")
        return ctx

    def now(self) -> float:
        return self.loop.time()

    # -- commands -------------------------------------------------------------------------------

    def _place(self, what: str) -> _Place:
        """The place of the next command of the running method run (``what`` describes it)."""
        if self._in_inline:
            raise InfiniticError(
                f"workflow {self.workflow_name}: a command ({what}) cannot be created inside "
                "inline(); inline is for local side effects only"
            )
        ctx = self._context()
        position = ctx.next_position
        ctx.next_position += 1
        return _Place(
            command_id=command_id(self.workflow_id, ctx.run.method_run_id, position),
            method_run_id=ctx.run.method_run_id,
            position=position,
            step=self._step,
        )

    def _new_command(self, record: _C) -> tuple[_C, CommandRecord | None]:
        """Check ``record``, just created by the code, against the history and keep it.

        Returns:
            The record and the history's record of the same command, if any.
        """
        recorded = self._recorded.get(record.command_id)
        if self.check_mode is not CheckMode.NONE:
            if recorded is None and self._replaying:
                where = self._where(record.method_run_id, record.position)
                raise _Changed(
                    self,
                    WorkflowChangedError(self.workflow_name, where, "nothing", record.describe()),
                )
            strict = self.check_mode is CheckMode.STRICT
            if recorded is not None and (
                recorded.kind != record.kind
                or recorded.name != record.name
                or recorded.step != record.step
                or (strict and recorded.arguments != record.arguments)
            ):
                where = self._where(record.method_run_id, record.position)
                found = record.describe()
                held = recorded.describe()
                if recorded.step != record.step and held == found:
                    held, found = (
                        f"{held} at step {recorded.step}",
                        f"{found} at step {record.step}",
                    )
                elif strict and recorded.arguments != record.arguments:
                    held, found = f"{held}{recorded.arguments}", f"{found}{record.arguments}"
                raise _Changed(self, WorkflowChangedError(self.workflow_name, where, held, found))
        self._created.append(record)
        return record, recorded

    def _deferred(self, record: CommandRecord, load_result: Callable[[Any], Any]) -> Deferred[Any]:
        deferred: Deferred[Any]
        if isinstance(record, TaskCommand):
            deferred = _TaskDeferred(
                loop=self.loop, id=record.command_id, description=record.describe()
            )
            deferred.load_result = load_result
        else:
            deferred = Deferred(loop=self.loop, id=record.command_id, description=record.describe())
        self._pending[record.command_id] = _Pending(record, deferred, load_result=load_result)
        return deferred

    def _renew(self, record: CommandRecord) -> None:
        """The task of ``record`` runs again (``retry_tasks``) after its outcome was handed to
        the code: its Deferred waits for the new outcome from this step on."""
        deferred = self._settled.pop(record.command_id, None)
        if deferred is None:  # the code no longer holds it: the new outcome goes nowhere
            self._pending[record.command_id] = _Pending(record)
            return
        deferred._renew()
        self._pending[record.command_id] = _Pending(
            record, deferred, load_result=deferred.load_result
        )

    def new_task(
        self,
        service_name: str,
        method_name: str,
        args: list[Any],
        tags: frozenset[str],
        meta: Mapping[str, bytes],
        load_result: Callable[[Any], Any],
        timeout: float | None = None,
    ) -> Deferred[Any]:
        record, _ = self._new_command(
            TaskCommand(
                **self._place(f"task {service_name}.{method_name}"),
                service_name=service_name,
                method_name=method_name,
                args=args,
                tags=sorted(tags),
                meta=dict(meta),
                timeout_at=self._timeout_at(timeout),
            )
        )
        return self._deferred(record, load_result)

    def new_child_workflow(
        self,
        workflow_name: str,
        method_name: str,
        args: list[Any],
        tags: frozenset[str],
        meta: Mapping[str, bytes],
        load_result: Callable[[Any], Any],
        timeout: float | None = None,
    ) -> Deferred[Any]:
        record, _ = self._new_command(
            ChildWorkflowCommand(
                **self._place(f"workflow {workflow_name}.{method_name}"),
                workflow_name=workflow_name,
                method_name=method_name,
                args=args,
                tags=sorted(tags),
                meta=dict(meta),
                timeout_at=self._timeout_at(timeout),
            )
        )
        return self._deferred(record, load_result)

    def _timeout_at(self, timeout: float | None) -> float | None:
        return None if timeout is None else self.loop.time() + timeout

    def new_method_call(
        self,
        workflow_name: str,
        workflow_id: str,
        method_name: str,
        args: list[Any],
        load_result: Callable[[Any], Any],
        timeout: float | None = None,
    ) -> Deferred[Any]:
        record, _ = self._new_command(
            MethodCommand(
                **self._place(f"method {workflow_name}.{method_name}"),
                workflow_name=workflow_name,
                target_workflow_id=workflow_id,
                method_name=method_name,
                args=args,
                timeout_at=self._timeout_at(timeout),
            )
        )
        return self._deferred(record, load_result)

    def new_method_dispatch_by_tag(
        self, workflow_name: str, tag: str, method_name: str, args: list[Any]
    ) -> Deferred[None]:
        return self._sent(
            MethodCommand(
                **self._place(f"method {workflow_name}.{method_name}"),
                workflow_name=workflow_name,
                tag=tag,
                method_name=method_name,
                args=args,
                status="completed",
            )
        )

    def new_signal(
        self,
        workflow_name: str,
        workflow_id: str | None,
        channel: Any,
        data: Any,
        type_names: list[str],
        tag: str | None = None,
    ) -> Deferred[None]:
        return self._sent(
            SignalCommand(
                **self._place(f"signal {workflow_name}.{channel.name}"),
                workflow_name=workflow_name,
                target_workflow_id=workflow_id,
                tag=tag,
                channel_name=channel.name,
                data=data,
                type_names=type_names,
                status="completed",
            )
        )

    def _sent(self, record: MethodCommand | SignalCommand) -> Deferred[None]:
        """A command that is done once sent (nothing comes back): its Deferred is complete."""
        self._new_command(record)
        deferred: Deferred[None] = Deferred(
            loop=self.loop, id=record.command_id, description=record.describe()
        )
        deferred.set_result(None)
        return deferred

    def new_receive(
        self, channel: Any, limit: int | None, type_name: str | None, filter: str | None
    ) -> Receiving[Any]:
        record, _ = self._new_command(
            ReceiveCommand(
                **self._place(f"receive {channel.name}"),
                channel_name=channel.name,
                limit=limit,
                type_name=type_name,
                filter=filter,
            )
        )
        receiving: Receiving[Any] = Receiving(self.loop, record.command_id, channel, limit)
        self._receivers[record.command_id] = receiving
        return receiving

    def _deliver_signal(self, signal: SignalRecord) -> None:
        receiving = self._receivers.get(signal.command_id)
        if receiving is None:
            if self._replaying and self.check_mode is not CheckMode.NONE:
                raise WorkflowChangedError(
                    self.workflow_name,
                    signal.command_id,
                    f"a signal for receive {signal.channel_name}",
                    "no such receive waiting",
                )
            return
        receiving.push(signal.data)

    def patched(self, patch_id: str) -> bool:
        ctx = self._context()
        cid = command_id(self.workflow_id, ctx.run.method_run_id, ctx.next_position)
        recorded = self._recorded.get(cid)
        if self._replaying and (
            not isinstance(recorded, PatchCommand) or recorded.patch_id != patch_id
        ):
            return False  # history from before the patch: the position is not consumed
        self._new_command(
            PatchCommand(**self._place(f"patch {patch_id}"), patch_id=patch_id, status="completed")
        )
        return True

    def random(self) -> random.Random:
        if self._rng is None:  # seeding costs a hash: most workflows never draw a number
            self._rng = random.Random(self.workflow_id)
        return self._rng

    @property
    def replaying(self) -> bool:
        return self._replaying

    def new_timer(self, due_at: float) -> Deferred[datetime]:
        record, _ = self._new_command(TimerCommand(**self._place("timer"), due_at=due_at))
        return self._deferred(record, lambda v: datetime.fromtimestamp(float(v), tz=UTC))

    def new_timer_handle(
        self,
        when: float,
        callback: Callable[..., object],
        args: tuple[Any, ...],
        context: contextvars.Context | None,
    ) -> asyncio.TimerHandle:
        record, _ = self._new_command(TimerCommand(**self._place("timer"), due_at=when))
        handle = asyncio.TimerHandle(when, callback, args, self.loop, context)
        self._pending[record.command_id] = _Pending(record, timer=handle)
        return handle

    def inline(self, fn: Callable[[], Any]) -> Deferred[Any]:
        record, recorded = self._new_command(InlineCommand(**self._place("inline")))
        deferred: Deferred[Any] = Deferred(
            loop=self.loop, id=record.command_id, description="inline"
        )
        if recorded is None:
            self._in_inline = True
            try:
                with nondeterminism.suspended():  # inline is where such values are made
                    value = fn()
                record.value = _ANY.dump_python(value, mode="json")
                record.status = "completed"
            except InfiniticError:
                raise
            except Exception as e:
                record.status = "failed"
                record.failure = failure_from_exception(e)
            finally:
                self._in_inline = False
            recorded = record
        self.inline_values[record.command_id] = recorded.value
        if recorded.status == "completed":
            deferred.set_result(recorded.value)
        else:
            assert recorded.failure is not None
            deferred.set_exception(exception_from_failure(recorded.failure))
        return deferred

    def _deliver(self, record: CommandRecord) -> None:
        pending = self._pending.pop(record.command_id, None)
        if pending is None:
            if self._replaying and self.check_mode is not CheckMode.NONE:
                raise WorkflowChangedError(
                    self.workflow_name,
                    self._where(record.method_run_id, record.position),
                    f"a result for {record.describe()}",
                    "no such command waiting",
                )
            return
        if pending.timer is not None:
            if not pending.timer.cancelled():
                self.loop.schedule(pending.timer)
            return
        deferred = pending.deferred
        if deferred is None or deferred.done():
            return
        if isinstance(deferred, _TaskDeferred):
            self._settled[record.command_id] = deferred
        if isinstance(record, TaskCommand):
            record = record.delivered_at(self._step)  # a retried task's outcome of that step
        if record.status == "completed":
            try:
                deferred.set_result(pending.load_result(record.value))
            except InfiniticError as e:
                deferred.set_exception(e)
        else:
            failure = record.failure
            if failure is None:
                deferred.set_exception(InfiniticError(f"{record.describe()} ended {record.status}"))
            else:
                deferred.set_exception(exception_from_failure(failure))

    def close(self) -> None:
        """Drop the instance: cancel its method runs without running workflow code further."""
        self.loop.close()
