"""Garbage-collector settings of a worker process run by the ``infinitic`` command.

CPython collects its youngest generation every 700 allocations by default, and each collection
of the oldest one walks every object the process holds: in a worker that handles thousands of
messages a second (each a few hundred short-lived objects, hardly any in a reference cycle),
that cost about 6% of the worker's CPU in the message-path benchmark, with pauses of 100-300 ms.
:func:`tune_for_worker` freezes what start-up created (modules, classes, configuration: never
garbage, no longer walked) and collects the youngest generation every 20,000 allocations; cycles
are still collected, a little later. The ``infinitic worker`` command applies it; an application
that embeds a worker decides for its own process (README, "Running workers": the same three
calls of the ``gc`` module).
"""

from __future__ import annotations

import gc

#: Allocations between collections of the youngest generation, then collections of each
#: generation between collections of the next one.
WORKER_GC_THRESHOLDS = (20_000, 20, 20)


def tune_for_worker() -> None:
    """Freeze the objects created so far and raise the collection thresholds (see the module
    documentation); call it once start-up is done."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*WORKER_GC_THRESHOLDS)
