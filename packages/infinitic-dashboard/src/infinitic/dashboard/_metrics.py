"""The metrics page's data: the Prometheus text of workers' metrics endpoints (``metrics:`` of
their configuration), scraped when the page is read and summed per component and topic:
messages handled (and their rate since the previous scrape), in flight, failures, retries,
dead letters, and the p50 and p99 of the handling time (from the histogram's buckets, as
Prometheus's ``histogram_quantile`` does)."""

from __future__ import annotations

import asyncio
import math
import time
import urllib.request
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from prometheus_client.parser import text_string_to_metric_families

Key = tuple[str, str]  # component, topic


@dataclass(slots=True)
class TopicRow:
    """What the workers measured of one topic, summed over the scraped endpoints."""

    component: str
    topic: str
    handled: float = 0.0
    rate: float | None = None  # messages per second since the previous scrape
    in_flight: float = 0.0
    failures: float = 0.0
    retries: float = 0.0
    dead_letters: float = 0.0
    buckets: dict[float, float] = field(default_factory=dict)  # le -> cumulative count
    backlog: int | None = None  # unacknowledged messages, when the broker tells

    def quantile(self, q: float) -> float | None:
        """The ``q`` quantile of the handling time in seconds (None: nothing handled)."""
        return histogram_quantile(q, self.buckets)


@dataclass(frozen=True, slots=True)
class Scrape:
    """One read of every endpoint: the rows by topic, and the endpoints that failed."""

    rows: list[TopicRow]
    errors: dict[str, str]


def histogram_quantile(q: float, buckets: dict[float, float]) -> float | None:
    """The ``q`` quantile of a cumulative histogram (upper bound -> count), interpolated
    linearly inside its bucket; the largest finite bound when it falls in the ``+Inf`` one."""
    bounds = sorted(buckets)
    if not bounds or buckets[bounds[-1]] <= 0:
        return None
    rank = q * buckets[bounds[-1]]
    lower, below = 0.0, 0.0
    for bound in bounds:
        count = buckets[bound]
        if count >= rank:
            if math.isinf(bound):
                return lower
            if count == below:
                return bound
            return lower + (bound - lower) * (rank - below) / (count - below)
        lower, below = bound, count
    return lower


def _fetch(url: str, timeout: float) -> str:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        body: bytes = response.read()
    return body.decode("utf-8")


def parse(text: str, rows: dict[Key, TopicRow]) -> None:
    """Add the topic metrics of one endpoint's Prometheus text to ``rows``."""
    simple = {
        "infinitic_messages_handled_total": "handled",
        "infinitic_messages_in_flight": "in_flight",
        "infinitic_message_failures_total": "failures",
        "infinitic_message_retries_total": "retries",
        "infinitic_dead_letters_total": "dead_letters",
    }
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            component = sample.labels.get("component")
            topic = sample.labels.get("topic")
            if component is None or topic is None:
                continue
            row = rows.setdefault((component, topic), TopicRow(component, topic))
            attribute = simple.get(sample.name)
            if attribute is not None:
                setattr(row, attribute, getattr(row, attribute) + sample.value)
            elif sample.name == "infinitic_message_handling_seconds_bucket":
                bound = float(sample.labels["le"])
                row.buckets[bound] = row.buckets.get(bound, 0.0) + sample.value


class MetricsScraper:
    """Reads the metrics endpoints of workers (``http://host:9464/metrics``...).

    Args:
        urls: the endpoints.
        timeout: seconds for each read.
        fetch: reads one URL's text (tests give their own; default: urllib in a thread).
        clock: seconds, monotonic.
    """

    def __init__(
        self,
        urls: Iterable[str],
        *,
        timeout: float = 5.0,
        fetch: Callable[[str, float], str] = _fetch,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.urls: Sequence[str] = list(urls)
        self._timeout = timeout
        self._fetch = fetch
        self._clock = clock
        self._previous: tuple[float, dict[Key, float]] | None = None

    async def scrape(self) -> Scrape:
        """Read every endpoint at once; the rate is measured since the previous scrape."""
        texts = await asyncio.gather(
            *(asyncio.to_thread(self._fetch, url, self._timeout) for url in self.urls),
            return_exceptions=True,
        )
        now = self._clock()
        rows: dict[Key, TopicRow] = {}
        errors: dict[str, str] = {}
        for url, text in zip(self.urls, texts, strict=True):
            if isinstance(text, BaseException):
                errors[url] = f"{type(text).__name__}: {text}"
                continue
            try:
                parse(text, rows)
            except ValueError as e:
                errors[url] = f"not Prometheus text: {e}"
        if self._previous is not None and now > self._previous[0]:
            before, counts = self._previous
            for key, row in rows.items():
                if key in counts and row.handled >= counts[key]:
                    row.rate = (row.handled - counts[key]) / (now - before)
        self._previous = (now, {key: row.handled for key, row in rows.items()})
        return Scrape(sorted(rows.values(), key=lambda r: (r.component, r.topic)), errors)
