"""The workflow state engine: the single writer of a workflow instance's state.

For each message: load the state, compute the new state and the messages to send, send them
(acknowledged by the broker), then store the state with a compare-and-set on its version. A
conflict (another writer) restarts the whole cycle on the fresh state; every step is idempotent,
so a message processed twice, or a cycle restarted after sending, has the effect of once.

Correctness never rests on broker ordering or on which process gets a message: several engines
(processes) may handle messages of one workflow at once. Outgoing messages are sent before the
state that records them is stored, so a message caused by them can reach another engine first:
- a workflow task names the exact state it was computed from (its stored version and the
  instance's incarnation) and has a fresh id: its outcome is applied only if it is the running
  task; if the stored version is not yet past the one it was computed from, the outcome is early
  and comes back later (RetryLater); otherwise it is superseded and dropped;
- a result for a command the state does not know yet comes back later for a moment, then is
  kept in the state (``early_results``) until the workflow task that created it is applied;
- commands are dispatched only by the engine that applies the workflow task creating them, so a
  superseded workflow task never starts anything.

Decoding a long workflow's state costs time in proportion to its history, at every message: the
engine keeps the states it stored last, decoded, and reuses one when the stored bytes are still
exactly the ones it wrote (so another writer, a deletion or a failed write is never missed).
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections import OrderedDict, deque
from collections.abc import Callable

from infinitic.common import (
    FailureInfo,
    TopicKind,
    compile_filter,
    deterministic_id,
    new_id,
    topic,
)
from infinitic.common.events import EventEmitter
from infinitic.common.messages import (
    TERMINAL,
    CancelWorkflow,
    ChildWorkflowCommand,
    CommandResult,
    CompleteTimers,
    Delivery,
    DispatchMethod,
    DispatchWorkflow,
    ExecuteWorkflowTask,
    Message,
    MethodRun,
    ReceiveCommand,
    Requester,
    RetryTasks,
    RetryWorkflowTask,
    SendSignal,
    SignalRecord,
    Step,
    TimerCommand,
    WaitMethod,
    WorkflowMessage,
    WorkflowTaskCompleted,
    WorkflowTaskFailed,
    WorkflowTaskOutcome,
)
from infinitic.common.tag_messages import RemoveTagFromWorkflow
from infinitic.exceptions import ValueTooLargeError, VersionConflictError
from infinitic.storage import KeyValueStorage, VersionedValue
from infinitic.transport import Outbox, RetryLater, Transport
from infinitic.workflow_engine._archive import HISTORY_CHUNK_STEPS, HistoryArchive, load_whole
from infinitic.workflow_engine._events import CycleEvents, send_with_events
from infinitic.workflow_engine._executor import WorkflowExecutor
from infinitic.workflow_engine._handlers import dispatch_command
from infinitic.workflow_engine._runs import (
    notify,
    notify_run,
    notify_unknown,
    owner,
    release,
    retry_tasks,
)
from infinitic.workflow_engine._state import (
    LIFETIME_COMMANDS,
    DecodedStates,
    EarlyResult,
    EncodedParts,
    WorkflowState,
    decode_state,
    encode_state,
    state_key,
)
from infinitic.workflow_engine._storage_retry import with_storage_retry
from infinitic.workflow_engine._too_large import state_too_large

logger = logging.getLogger("infinitic.workflow_engine")

MAX_CAS_ATTEMPTS = 20
RECENT_SIGNALS = 1000  # signal ids remembered per instance, to drop duplicates
DEFAULT_STATE_CACHE_BYTES = 16 * 2**20
#: An outcome or result that came before the state expecting it comes back after a delay that
#: doubles from the first to the last: the state is usually stored a millisecond or two later
#: (its engine awaits its sends' receipts, then stores), sometimes much later (a storage stall,
#: a crash before the store).
EARLY_RETRY_FIRST_SECONDS = 0.002
EARLY_RETRY_SECONDS = 0.05
#: Messages whose postponement this engine keeps track of.
MAX_POSTPONED = 10_000
#: A result for a command the state does not know yet is kept in the state after this age
#: (the engine that dispatched the command may have crashed before storing it: its input message
#: comes again and records the same command).
EARLY_RESULT_WAIT_SECONDS = 2.0
#: A workflow task outcome for an absent instance is waited for at most this long (the first
#: state may still be being stored), then dropped with a warning.
ABSENT_OUTCOME_WAIT_SECONDS = 30.0
#: Workflow tasks run in a row in one cycle by an engine with an executor (then one is sent).
MAX_INLINE_TASKS = 100


class _Turns:
    """One handler at a time per workflow instance, in arrival order.

    An instance nobody handles has no entry; one being handled has the queue of the handlers
    waiting for it (usually empty). The usual message thus costs two dict operations, where an
    ``asyncio.Lock`` per instance cost its creation and two coroutine calls.
    """

    __slots__ = ("_waiting",)

    def __init__(self) -> None:
        self._waiting: dict[str, deque[asyncio.Future[None]]] = {}

    def __contains__(self, key: str) -> bool:
        return key in self._waiting

    async def take(self, key: str) -> None:
        """Wait for ``key``'s turn (at once if nobody has it); :meth:`give_up` after."""
        queue = self._waiting.get(key)
        if queue is None:
            self._waiting[key] = deque()
            return
        turn = asyncio.get_running_loop().create_future()
        queue.append(turn)
        try:
            await turn
        except asyncio.CancelledError:
            if turn.done() and not turn.cancelled():
                self.give_up(key)  # it was handed the turn: pass it on
            raise

    def give_up(self, key: str) -> None:
        """End ``key``'s turn: the next waiting handler takes it."""
        queue = self._waiting[key]
        while queue:
            turn = queue.popleft()
            if not turn.done():  # a waiter cancelled meanwhile is skipped
                turn.set_result(None)
                return
        del self._waiting[key]


class WorkflowStateEngine:
    """Applies messages of the ``workflow-engine`` topic of one workflow to its stored states."""

    def __init__(
        self,
        workflow_name: str,
        transport: Transport,
        storage: KeyValueStorage,
        *,
        clock: Callable[[], float] | None = None,
        state_cache_bytes: int = DEFAULT_STATE_CACHE_BYTES,
        history_chunk_steps: int = HISTORY_CHUNK_STEPS,
        executor: WorkflowExecutor | None = None,
        events: EventEmitter | None = None,
    ) -> None:
        self.workflow_name = workflow_name
        self._events = events  # publishes what each cycle did (None: no events)
        self._transport = transport
        self._storage = storage
        self._clock = clock or transport.now
        self._decoded = DecodedStates(state_cache_bytes)
        self._archive = HistoryArchive(storage, history_chunk_steps)
        self._executor = executor
        self._turns = _Turns()
        # message id -> when this engine first postponed it (its clock), to bound the waits
        self._postponed: OrderedDict[str, float] = OrderedDict()
        self.unknown_instance_messages = 0  # messages dropped for an absent instance
        self.superseded_outcomes = 0  # outcomes of superseded workflow tasks dropped

    async def handle(self, message: WorkflowMessage) -> None:
        """Process one message; idempotent; returns once the new state is stored.

        Messages of one instance are processed one at a time by this engine, whatever topic
        they come from (``workflow-cmd`` and ``workflow-engine`` are consumed apart): inside a
        process no message meets a state whose store is still under way.
        """
        workflow_id = message.workflow_id
        await self._turns.take(workflow_id)
        try:
            await self._handle(message)
        finally:
            self._turns.give_up(workflow_id)

    async def _handle(self, message: WorkflowMessage) -> None:
        key = state_key(self.workflow_name, message.workflow_id)
        written: str | None = None  # a chunk this cycle wrote before losing its store
        # A dispatch is most likely of a new instance: with an executor here (whose first task
        # runs once the new state is stored, so nothing is sent before), the creation itself (a
        # put expecting no state) tells, and only a conflict reads the state. One storage
        # round trip less on a new workflow's path.
        optimistic = self._executor is not None and isinstance(message, DispatchWorkflow)
        for _ in range(MAX_CAS_ATTEMPTS + optimistic):
            if optimistic:
                optimistic = False
                stored = None
            else:
                stored = await with_storage_retry(self._storage.get, key)
            state = None
            version = 0
            parts = EncodedParts()
            if stored is not None:
                kept = self._decoded.take(key, stored.value)
                if kept is not None:
                    state, parts = kept
                else:
                    state = decode_state(key, stored.value)
                version = stored.version
            if written is not None:
                await self._archive.discard_if_unlisted(written, state)
            written = None
            if (
                state is not None
                and isinstance(message, CommandResult)
                and await self._archive.holds_result(key, state, message.command_id)
            ):
                return  # a duplicate of a result delivered long ago
            outbox = Outbox()
            cycle = CycleEvents(state, message) if self._events is not None else None
            new_state, changed = self._process(state, version, message, outbox)
            if cycle is not None:
                cycle.started(new_state)
            if self._executor is not None and new_state is not None:
                if stored is None:
                    # A new instance is stored before anything is sent for it (no result can
                    # come for an instance not stored yet); then its first task runs here.
                    encoded = encode_state(new_state, parts)
                    try:
                        version = await with_storage_retry(
                            self._storage.put, key, encoded, expected_version=0
                        )
                    except VersionConflictError:
                        continue
                    stored = VersionedValue(encoded, version)
                    state = new_state
                    self._dispatch_workflow_task(new_state, version, outbox)
                new_state = await self._run_tasks(key, new_state, version, outbox, cycle)
            events = None  # this cycle's events, sent with its other messages
            if cycle is not None and self._events is not None:
                limit = self._transport.max_message_bytes
                ended = stored is not None and new_state is None
                events = cycle.finish(ended, outbox, self._events, limit)
            await send_with_events(outbox, self._transport, events)
            if not changed:
                return
            expected = stored.version if stored is not None else 0
            try:
                if new_state is not None:
                    written = await self._archive.settle(new_state, parts)
                if new_state is None:
                    if stored is not None:
                        await with_storage_retry(
                            self._storage.delete, key, expected_version=expected
                        )
                        if state is not None:
                            await self._archive.forget(state)
                else:
                    encoded = encode_state(new_state, parts)
                    await with_storage_retry(
                        self._storage.put, key, encoded, expected_version=expected
                    )
                    self._decoded.keep(key, encoded, new_state, parts)
                return
            except VersionConflictError:
                logger.debug("state of %s changed concurrently, processing again", key)
            except ValueTooLargeError as e:  # past the backend's limit: waiting cannot help
                if new_state is not None:
                    await state_too_large(new_state, message, e).send(self._transport)
                raise
        raise VersionConflictError(key, None, None)

    async def _run_tasks(
        self,
        key: str,
        state: WorkflowState,
        version: int,
        out: Outbox,
        cycle: CycleEvents | None = None,
    ) -> WorkflowState | None:
        """Run the workflow task ``out`` holds with this engine's executor and apply its outcome
        in the same cycle (again for the task that outcome may dispatch): the task and its
        outcome never cross the broker, and the state is stored once. A task the executor
        cannot run here stays in ``out`` and is sent to the executors as usual."""
        current: WorkflowState | None = state
        for _ in range(MAX_INLINE_TASKS):
            item = next(  # a retry after a delay goes through the executors' topic
                (
                    o
                    for o in out.items
                    if isinstance(o.message, ExecuteWorkflowTask) and o.deliver_at is None
                ),
                None,
            )
            if item is None or current is None:
                return current
            assert isinstance(item.message, ExecuteWorkflowTask)
            outcome = await self._execute(key, current, item.message)
            if outcome is None:
                return current
            out.items.remove(item)
            if cycle is not None:
                cycle.inline(out, item.message, outcome)
            current, _ = self._process(current, version, outcome, out)
        return current

    async def _execute(
        self, key: str, state: WorkflowState, task: ExecuteWorkflowTask
    ) -> WorkflowTaskCompleted | WorkflowTaskFailed | None:
        executor = self._executor
        assert executor is not None
        # The records are the state's own (no copies): the executor reads them while it runs
        # the task, and a live instance keeps only what never changes (ids and names).

        unreadable = False  # the archived history could not be read (the message comes again)

        async def whole(_: ExecuteWorkflowTask) -> WorkflowState:
            nonlocal unreadable
            try:
                return await load_whole(self._storage, key, state)
            except Exception:
                unreadable = True
                raise

        try:
            return await executor.execute(task, whole, recent=state)
        except Exception:  # not an error of workflow code (that is a WorkflowTaskFailed)
            if unreadable:
                raise
            logger.warning(
                "workflow task %s of %s %s not run in the engine; sent to an executor",
                task.workflow_task_id,
                task.workflow_name,
                task.workflow_id,
                exc_info=True,
            )
            return None

    # -- the pure part ----------------------------------------------------------------------

    def _process(
        self, state: WorkflowState | None, version: int, m: Message, out: Outbox
    ) -> tuple[WorkflowState | None, bool]:
        """Apply ``m`` to ``state`` (stored at ``version``, 0 if absent).

        Raises:
            RetryLater: ``m`` came before the state that expects it was stored.
        """
        if state is None:
            return self._process_absent(m, out)
        changed = self._apply(state, version, m, out)
        if state.terminated():
            for tag in state.tags:  # sent before the state is deleted: a crash loses nothing
                out.add(
                    topic(TopicKind.WORKFLOW_TAG, state.workflow_name),
                    RemoveTagFromWorkflow(
                        workflow_name=state.workflow_name,
                        tag=tag,
                        workflow_id=state.workflow_id,
                        message_id=deterministic_id("untag", state.workflow_id, tag),
                    ),
                    key=tag,
                )
            return None, True
        if self._dispatch_workflow_task(state, version, out):
            changed = True
        return state, changed

    def _process_absent(self, m: Message, out: Outbox) -> tuple[WorkflowState | None, bool]:
        if isinstance(m, DispatchWorkflow):
            state = WorkflowState(
                workflow_name=m.workflow_name,
                workflow_id=m.workflow_id,
                incarnation=new_id(),
                tags=m.tags,
                meta=m.meta,
                parent=m.parent,
            )
            run = MethodRun(
                method_run_id=m.workflow_id,
                method_name=m.method_name,
                args=m.method_args,
                requesters=[m.requester] if m.requester else [],
            )
            state.method_runs[run.method_run_id] = run
            state.pending.append(Delivery(kind="method", id=run.method_run_id))
            if self._executor is None:  # else dispatched once this state is stored
                self._dispatch_workflow_task(state, 0, out)
            return state, True
        if isinstance(m, WorkflowTaskOutcome) and m.state_version == 0:
            # The first state of the instance may not be stored yet.
            self._postpone(m, ABSENT_OUTCOME_WAIT_SECONDS, f"{m.TYPE} before the first state")
        if isinstance(m, DispatchMethod | WaitMethod) and m.requester is not None:
            method_name = m.method_name if isinstance(m, DispatchMethod) else None
            notify_unknown(m, method_name, m.requester, out)
        elif isinstance(m, WorkflowMessage):
            self.unknown_instance_messages += 1
            logger.warning(
                "%s %s for unknown workflow %s %s dropped (the instance ended or never existed)",
                m.TYPE,
                m.message_id,
                m.workflow_name,
                m.workflow_id,
            )
        return None, False

    def _apply(self, state: WorkflowState, version: int, m: Message, out: Outbox) -> bool:
        if isinstance(m, DispatchWorkflow):
            run = state.method_runs.get(m.workflow_id)
            if m.requester is None or run is None:
                return False
            return self._wait(state, run, m.requester, out)
        if isinstance(m, DispatchMethod):
            existing = state.method_runs.get(m.method_run_id)
            if existing is not None:
                return self._wait(state, existing, m.requester, out) if m.requester else False
            run = MethodRun(
                method_run_id=m.method_run_id,
                method_name=m.method_name,
                args=m.method_args,
                requesters=[m.requester] if m.requester else [],
            )
            state.method_runs[run.method_run_id] = run
            state.pending.append(Delivery(kind="method", id=run.method_run_id))
            return True
        if isinstance(m, WaitMethod):
            run = state.method_runs.get(m.method_run_id)
            if run is None:
                notify_unknown(m, None, m.requester, out)
                return False
            return self._wait(state, run, m.requester, out)
        if isinstance(m, CommandResult):
            if m.command_id not in state.commands and m.command_id not in state.early_results:
                reason = f"result of unknown command {m.command_id}"
                self._postpone(m, EARLY_RESULT_WAIT_SECONDS, reason)
            return self._command_result(state, m.command_id, m.status, m.value, m.failure)
        if isinstance(m, SendSignal):
            if state.running_task_id is not None:  # receives created meanwhile must see it
                if any(b.signal_id == m.signal_id for b in state.buffered_signals):
                    return False
                state.buffered_signals.append(m)
                return True
            return self._signal(state, m)
        if isinstance(m, WorkflowTaskOutcome) and not self._is_running(state, version, m):
            return False
        if isinstance(m, WorkflowTaskCompleted):
            return self._task_completed(state, m, out)
        if isinstance(m, WorkflowTaskFailed):
            if m.retry_delay is not None and state.steps:
                return self._retry_task_later(state, version, m, out)
            return self._task_failed(state, m, out)
        if isinstance(m, CancelWorkflow):
            return self._cancel(state, out)
        if isinstance(m, RetryWorkflowTask):
            return self._retry_workflow_task(state, version, out)
        if isinstance(m, RetryTasks):
            return retry_tasks(state, m, out)
        if isinstance(m, CompleteTimers):
            return self._complete_timers(state, m)
        logger.warning("workflow engine ignores a %s message", type(m).__name__)
        return False

    def _wait(
        self, state: WorkflowState, run: MethodRun, requester: Requester, out: Outbox
    ) -> bool:
        if run.status in TERMINAL:
            notify_run(state, run, [requester], out)
            return False
        failure = state.failed_task or state.failed_runs.get(run.method_run_id)
        if failure is not None:
            # Stuck on a failed workflow task: the waiter learns of the failure now (a client
            # still hears how the run ends once the task is retried, see _release).
            notify(
                state.workflow_name,
                state.workflow_id,
                run.method_run_id,
                run.method_name,
                "failed",
                None,
                failure,
                [requester],
                out,
            )
            if requester.client_name is None:
                return False
        if requester in run.requesters:
            return False
        run.requesters.append(requester)
        return True

    def _command_result(
        self,
        state: WorkflowState,
        command_id: str,
        status: str,
        value: object,
        failure: FailureInfo | None,
    ) -> bool:
        record = state.commands.get(command_id)
        if record is None:
            if command_id in state.early_results:
                return False
            state.early_results[command_id] = EarlyResult(
                status=status, value=value, failure=failure
            )
            return True
        if record.status != "ongoing":
            return False  # a duplicate, or a result after a timeout: the first one wins
        record.status = status  # type: ignore[assignment]
        record.value = value
        record.failure = failure
        self._enqueue(state, Delivery(kind="result", id=command_id))
        return True

    def _enqueue(self, state: WorkflowState, delivery: Delivery) -> None:
        """Queue ``delivery`` for the next step, or park it while its method run is failed."""
        if state.failed_runs and owner(state, delivery) in state.failed_runs:
            state.parked.append(delivery)
        else:
            state.pending.append(delivery)

    def _signal(self, state: WorkflowState, m: SendSignal) -> bool:
        if m.signal_id in state.recent_signal_ids or m.signal_id in state.signals:
            return False
        state.recent_signal_ids = [*state.recent_signal_ids[-(RECENT_SIGNALS - 1) :], m.signal_id]
        for record in state.commands.values():
            if (
                isinstance(record, ReceiveCommand)
                and record.status == "ongoing"
                and record.channel_name == m.channel_name
                and (record.type_name is None or record.type_name in m.type_names)
                and (record.filter is None or compile_filter(record.filter)(m.data))
            ):
                record.received += 1
                if record.limit is not None and record.received >= record.limit:
                    record.status = "completed"
                state.signals[m.signal_id] = SignalRecord(
                    signal_id=m.signal_id,
                    channel_name=m.channel_name,
                    data=m.data,
                    command_id=record.command_id,
                )
                self._enqueue(state, Delivery(kind="signal", id=m.signal_id))
                return True
        logger.info(
            "signal %s to %s.%s of %s discarded: nothing receives it",
            m.signal_id,
            state.workflow_name,
            m.channel_name,
            state.workflow_id,
        )
        return True

    def _postpone(self, m: Message, limit: float, reason: str) -> None:
        """Raise RetryLater for ``m`` unless this engine has been postponing it for ``limit``
        seconds already (then the caller goes on without waiting any more). It comes back
        after as long as it has been postponed so far, from EARLY_RETRY_FIRST_SECONDS to
        EARLY_RETRY_SECONDS."""
        now = self._clock()
        first = self._postponed.setdefault(m.message_id, now)
        if now - first < limit:
            while len(self._postponed) > MAX_POSTPONED:
                self._postponed.popitem(last=False)
            delay = min(EARLY_RETRY_SECONDS, max(EARLY_RETRY_FIRST_SECONDS, now - first))
            raise RetryLater(delay, reason)
        self._postponed.pop(m.message_id, None)

    def _is_running(self, state: WorkflowState, version: int, m: WorkflowTaskOutcome) -> bool:
        """True if ``m`` is the outcome of the running workflow task.

        Raises:
            RetryLater: the state that dispatched the task is not stored yet.
        """
        if m.incarnation and state.incarnation and m.incarnation != state.incarnation:
            self.superseded_outcomes += 1
            return False  # a former instance with the same id
        if m.workflow_task_id == state.running_task_id:
            return True
        if version <= m.state_version:
            reason = (
                f"outcome of workflow task {m.workflow_task_id} before its state (version "
                f"{m.state_version + 1}, stored: {version})"
            )
            self._postpone(m, math.inf, reason)  # for as long as it takes
        # Completed already, or computed from a state that was never stored.
        self.superseded_outcomes += 1
        logger.debug(
            "outcome of superseded workflow task %s of %s %s dropped",
            m.workflow_task_id,
            m.workflow_name,
            m.workflow_id,
        )
        return False

    def _task_completed(self, state: WorkflowState, m: WorkflowTaskCompleted, out: Outbox) -> bool:
        state.running_task_id = None
        state.last_task_id = m.workflow_task_id
        if state.workflow_version is None:
            state.workflow_version = m.workflow_version
        state.inline_digest = m.inline_digest
        for command in m.new_commands:
            if command.command_id in state.commands:
                continue
            state.commands[command.command_id] = command
            dispatch_command(state.workflow_name, state.workflow_id, command, out)
            if command.status in TERMINAL:  # inline, signal, patch: already done
                continue
            early = state.early_results.pop(command.command_id, None)
            if early is not None:
                self._command_result(
                    state, command.command_id, early.status, early.value, early.failure
                )
        for outcome in m.method_outcomes:
            run = state.method_runs.get(outcome.method_run_id)
            if run is None or run.status in TERMINAL:
                continue
            run.status = outcome.status
            run.value = outcome.value
            run.failure = outcome.failure
            release(state, run, out)
        self._flush_signals(state)
        return True

    def _retry_task_later(
        self, state: WorkflowState, version: int, m: WorkflowTaskFailed, out: Outbox
    ) -> bool:
        """The workflow's retry policy gives the failed task another try: the same step is sent
        again (as a new task) to the executors, due after the policy's delay; nothing else
        changes, and messages that come meanwhile wait for it as for any running task."""
        assert m.retry_delay is not None
        self._send_workflow_task(state, version, out)
        item = out.items.pop()
        assert isinstance(item.message, ExecuteWorkflowTask)
        task = item.message.model_copy(update={"retry_index": m.retry_index + 1})
        out.add(item.topic, task, key=item.key, deliver_at=self._clock() + m.retry_delay)
        return True

    def _task_failed(self, state: WorkflowState, m: WorkflowTaskFailed, out: Outbox) -> bool:
        state.running_task_id = None
        if not self._fail_method_run(state, m):
            state.failed_task = m.failure
        for run in state.method_runs.values():
            concerned = m.method_run_id is None or run.method_run_id == m.method_run_id
            if run.status == "ongoing" and run.requesters and concerned:
                # the run stays ongoing (resumable); its current waiters learn of the failure
                release(state, run, out, status="failed", failure=m.failure)
        self._flush_signals(state)
        return True

    def _fail_method_run(self, state: WorkflowState, m: WorkflowTaskFailed) -> bool:
        """Fail only the method run whose code raised, if the failed step delivered something
        to it: the step leaves the history (it never happened), its deliveries for that run
        wait in ``parked`` until retry_workflow_task, and the others go to a new step, so the
        other method runs go on. Replay stays deterministic: the history only holds steps that
        completed. Returns False when the whole instance must wait (history mismatch, an
        error outside method code, a run failed by a delivery to another run)."""
        run_id = m.method_run_id
        step = state.steps[-1] if state.steps else None
        if run_id is None or run_id not in state.method_runs or step is None:
            return False
        if step.index != m.step:
            return False
        mine = [d for d in step.deliveries if owner(state, d) == run_id]
        if not mine:
            return False
        state.steps.pop()
        for delivery in step.deliveries:
            if delivery.kind == "result":
                state.commands[delivery.id].delivered_step = None
        state.parked.extend(mine)
        state.pending = [d for d in step.deliveries if d not in mine] + state.pending
        state.failed_runs[run_id] = m.failure
        return True

    def _cancel(self, state: WorkflowState, out: Outbox) -> bool:
        for record in state.commands.values():
            if not isinstance(record, LIFETIME_COMMANDS) or record.status != "ongoing":
                continue
            # nothing waits for it any more: the instance ends with its method runs (a task
            # runs on, as in Infinitic; a child is canceled)
            record.status = "canceled"
            if isinstance(record, ChildWorkflowCommand):
                out.add(
                    topic(TopicKind.WORKFLOW_CMD, record.workflow_name),
                    CancelWorkflow(
                        workflow_name=record.workflow_name,
                        workflow_id=record.command_id,
                        reason=f"parent {state.workflow_id} canceled",
                    ),
                    key=record.command_id,
                )
        for run in state.method_runs.values():
            if run.status in TERMINAL:
                continue
            run.status = "canceled"
            release(state, run, out)
        return True

    def _retry_workflow_task(self, state: WorkflowState, version: int, out: Outbox) -> bool:
        if state.running_task_id is not None:
            return False
        if state.failed_runs:  # their deliveries come in the next step (after those pending)
            state.failed_runs = {}
            state.pending.extend(state.parked)
            state.parked = []
            if state.failed_task is None:
                return True
        if state.failed_task is None:
            return False
        state.failed_task = None
        if state.steps:
            state.task_attempt += 1
            self._send_workflow_task(state, version, out)
        return True

    def _complete_timers(self, state: WorkflowState, m: CompleteTimers) -> bool:
        changed = False
        for record in list(state.commands.values()):
            if (
                isinstance(record, TimerCommand)
                and record.status == "ongoing"
                and (m.method_run_id is None or record.method_run_id == m.method_run_id)
            ):
                changed |= self._command_result(
                    state, record.command_id, "completed", record.due_at, None
                )
        return changed

    def _dispatch_workflow_task(self, state: WorkflowState, version: int, out: Outbox) -> bool:
        if state.running_task_id is not None or state.failed_task is not None:
            return False
        if not state.pending:
            return False
        index = state.step_count()
        step = Step(index=index, instant=self._clock(), deliveries=state.pending)
        for delivery in state.pending:
            if delivery.kind == "result":
                state.commands[delivery.id].delivered_step = index
        state.pending = []
        state.steps.append(step)
        state.task_attempt = 0
        self._send_workflow_task(state, version, out)
        return True

    def _send_workflow_task(self, state: WorkflowState, version: int, out: Outbox) -> None:
        index = state.step_count() - 1
        # A fresh id: a task computed again from another state (after a compare-and-set
        # conflict, or by another engine) is another task, whose outcome the state can tell.
        task_id = new_id()
        state.running_task_id = task_id
        if state.steps:  # recorded with the step: see Step.task_id
            state.steps[-1].task_id = task_id
        if index > 0:
            # Only what this step delivers: an executor holding the live instance needs no
            # more, and one that does not reads the whole history from storage.
            step = state.steps[-1]
            ids = {d.id for d in step.deliveries}
            signals = [state.signals[i] for i in ids if i in state.signals]
            ids |= {s.command_id for s in signals}
            method_runs = [state.method_runs[i] for i in ids if i in state.method_runs]
            steps = [step]
            commands = [state.commands[i] for i in ids if i in state.commands]
        else:
            method_runs = list(state.method_runs.values())
            steps = state.steps
            commands = list(state.commands.values())
            signals = list(state.signals.values())
        out.add(
            topic(TopicKind.WORKFLOW_TASK_EXECUTOR, state.workflow_name),
            ExecuteWorkflowTask(
                workflow_name=state.workflow_name,
                workflow_id=state.workflow_id,
                workflow_task_id=task_id,
                tags=state.tags,
                meta=state.meta,
                workflow_version=state.workflow_version,
                method_runs=method_runs,
                steps=steps,
                commands=commands,
                signals=signals,
                complete_history=index == 0,
                inline_digest=state.inline_digest,
                state_version=version,
                incarnation=state.incarnation,
                previous_task_id=state.last_task_id,
            ),
            key=state.workflow_id,
        )

    def _flush_signals(self, state: WorkflowState) -> None:
        """Handle the signals that arrived while the workflow task ran, in arrival order."""
        buffered, state.buffered_signals = state.buffered_signals, []
        for signal in buffered:
            self._signal(state, signal)
