"""Example event listeners: a JSON-lines file writer and a per-workflow timeline in Redis.

Register one on a worker with ``worker.add_event_listener(JsonLinesWriter("events.jsonl"))``,
or in its configuration::

    eventListener:
      class: infinitic_examples.event_listeners.JsonLinesWriter   # INFINITIC_EVENTS_FILE
"""

from infinitic_examples.event_listeners.json_lines import JsonLinesWriter
from infinitic_examples.event_listeners.timeline import RedisTimeline, read_timeline

__all__ = ["JsonLinesWriter", "RedisTimeline", "read_timeline"]
