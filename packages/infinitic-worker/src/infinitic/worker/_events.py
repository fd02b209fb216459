"""A worker's events: the emitters its engines publish with, and its event listeners."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from infinitic.common import __version__ as library_version
from infinitic.common.events import EventEmitter, EventRecorder, EventTopic, alongside
from infinitic.common.messages import ExecuteWorkflowTask, Message
from infinitic.exceptions import ConfigurationError
from infinitic.transport import Consumer, Outbox, Transport
from infinitic.worker._config_events import EventListenerConfig
from infinitic.worker._event_listener import EventListener, EventListenerRunner, resolve_listener
from infinitic.workflow_engine import workflow_task_events


class WorkerEvents:
    """What a worker publishes for event listeners, and the listeners it runs.

    Args:
        transport: the worker's transport.
        worker_name: ``workerName`` in the events' data.
        publish: publish the engines' events (False: the engines send nothing extra).
    """

    def __init__(self, transport: Transport, worker_name: str, publish: bool) -> None:
        self._transport = transport
        self.worker_name = worker_name
        self.publish = publish
        self._listeners: list[tuple[EventListener, EventListenerConfig]] = []
        self._executor_emitters: dict[str, EventEmitter] = {}

    def emitter(self, kind: EventTopic, entity: str) -> EventEmitter | None:
        """The emitter of an engine of ``entity`` (None when events are off)."""
        if not self.publish:
            return None
        return EventEmitter(
            kind.of(entity), entity, self.worker_name, library_version, self._transport.publish
        )

    def workflow_task(self, task: Message, outcome: Message) -> asyncio.Future[None] | None:
        """Publish the events of a workflow task run by a workflow executor that got it from
        the broker (inline ones are the state engine's), before its outcome is sent (so their
        time comes before what the outcome causes). Returns the publish to wait for (see
        :meth:`send`); None with events off."""
        if not self.publish or not isinstance(task, ExecuteWorkflowTask):
            return None
        emitter = self._executor_emitters.get(task.workflow_name)
        if emitter is None:
            emitter = self.emitter(EventTopic.WORKFLOW_EXECUTOR, task.workflow_name)
            assert emitter is not None
            self._executor_emitters[task.workflow_name] = emitter
        recorder = EventRecorder()
        workflow_task_events(recorder, task, outcome)  # type: ignore[arg-type]
        limit = self._transport.max_message_bytes
        return emitter.publish(emitter.encode(task.message_id, recorder.records, limit))

    async def send(self, out: Outbox, events: asyncio.Future[None] | None) -> None:
        """Send ``out`` and wait for ``events`` (before the message handled is acknowledged)."""
        await alongside(out.send(self._transport), events)

    def add_listener(
        self,
        listener: object,
        config: EventListenerConfig | None,
        options: Mapping[str, Any],
    ) -> None:
        """Register a listener with its settings (``config``, or ``options`` given as
        ``eventListener:`` keys).

        Raises:
            ConfigurationError: the listener is not callable or an option is invalid.
        """
        if config is not None and options:
            raise ConfigurationError("add_event_listener: give either config= or options, not both")
        if config is None:
            try:
                config = EventListenerConfig(**options)
            except ValidationError as e:
                problems = "; ".join(
                    f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in e.errors()
                )
                raise ConfigurationError(f"eventListener: {problems}") from None
        self._listeners.append((resolve_listener(listener, "eventListener"), config))

    def listened(self, services: list[str], workflows: list[str]) -> bool:
        """Whether a listener has something to listen to, given the services and workflows
        the worker runs (its allow lists may name others)."""
        return any(
            config.services.chosen(services) or config.workflows.chosen(workflows)
            for _, config in self._listeners
        )

    @property
    def listeners(self) -> list[tuple[EventListener, EventListenerConfig]]:
        """The registered listeners and their settings."""
        return list(self._listeners)

    async def start_listeners(
        self,
        services: list[str],
        workflows: list[str],
        *,
        max_redeliveries: int,
        redelivery_delay: float,
    ) -> list[Consumer]:
        """Subscribe every listener to its events topics; returns the consumers."""
        consumers: list[Consumer] = []
        for listener, config in self._listeners:
            runner = EventListenerRunner(
                self._transport,
                listener,
                config,
                max_redeliveries=max_redeliveries,
                redelivery_delay=redelivery_delay,
            )
            consumers.extend(await runner.start(services, workflows))
        return consumers
