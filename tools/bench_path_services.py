"""The services of the message-path benchmark's workers (tools/bench_path.py).

The bank wire example's ``PrintingEmails`` is synchronous (it runs in the worker's thread pool)
and keeps every email it sends; the benchmark wants the message path only, so its email service
is asynchronous and keeps nothing. The bank is the example's ``InMemoryBank`` (asynchronous).
"""

from __future__ import annotations

from infinitic.services import task_context


class QuietEmails:
    """An ``EmailService`` implementation that sends nothing, prints nothing, keeps nothing."""

    async def send(self, wire_id: str, to: str, text: str) -> str:
        return f"email-{wire_id}-{task_context().retry_index}"
