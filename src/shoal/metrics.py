"""Prometheus metrics, per model and deployment, in one registry per app (no module globals).

Counted when a generation ends (``PipelineObserver.closed``): requests by status,
tokens (input / output / cached; drafted / accepted by speculative decoding), time to
first token and latency histograms;
when a deployment fails before its first byte: upstream errors. Queue depth and
running requests are read from the admission queues at scrape time.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

if TYPE_CHECKING:
    from shoal.core.backend import BackendFailure
    from shoal.core.deployment import Deployment
    from shoal.core.generation import Generation
    from shoal.storage.usage import UsageStore

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
LABELS = ("model", "deployment")
SECONDS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)


class _Queues(Collector):
    """Queue depth, running requests and breaker state, read live from the deployments."""

    def __init__(self, deployments: Callable[[], Sequence["Deployment"]]) -> None:
        self._deployments = deployments

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        queued = GaugeMetricFamily("shoal_queue_depth", "Requests waiting for a slot", labels=LABELS)
        running = GaugeMetricFamily("shoal_running_requests", "Requests being generated", labels=LABELS)
        open_ = GaugeMetricFamily("shoal_circuit_open", "1 while the deployment's circuit is open", labels=LABELS)
        up = GaugeMetricFamily("shoal_deployment_up", "0 while the deployment's health probe fails", labels=LABELS)
        loaded = GaugeMetricFamily("shoal_model_loaded", "1 while a local model is in memory", labels=LABELS)
        loads = CounterMetricFamily("shoal_model_loads", "Loads of a serverless local model", labels=LABELS)
        unloads = CounterMetricFamily("shoal_model_unloads", "Unloads (idle or evicted) of a serverless local model",
                                      labels=LABELS)
        for dep in self._deployments():
            labels = [dep.card.id, dep.name]
            queued.add_metric(labels, dep.admission.queued)
            running.add_metric(labels, dep.admission.running)
            open_.add_metric(labels, 1.0 if dep.breaker.state == "open" else 0.0)
            up.add_metric(labels, 1.0 if dep.up else 0.0)
            status = dep.status()
            if status is not None:
                loaded.add_metric(labels, 1.0 if status.get("state") == "loaded" else 0.0)
                if "loads" in status:
                    loads.add_metric(labels, status["loads"])
                    unloads.add_metric(labels, status["unloads"])
        yield from (queued, running, open_, up, loaded, loads, unloads)


class UsageQueue(Collector):
    """Usage rows waiting to be written, and rows given up on (the database failed for too long)."""

    def __init__(self, usage: "UsageStore") -> None:
        self._usage = usage

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        yield GaugeMetricFamily("shoal_usage_rows_pending", "Usage rows queued, not yet in the database",
                                value=self._usage.pending)
        yield CounterMetricFamily("shoal_usage_rows_dropped", "Usage rows dropped: queue full while the database "
                                  "failed, or still unwritable at shutdown", value=self._usage.dropped)


class _Histogram:
    """Observations per bucket of :data:`SECONDS` (and above), plus their sum."""

    __slots__ = ("counts", "total")

    def __init__(self) -> None:
        self.counts = [0] * (len(SECONDS) + 1)
        self.total = 0.0

    def observe(self, value: float) -> None:
        """Count ``value`` in the first bucket whose bound is at least ``value`` (Prometheus' ``le``)."""
        self.counts[bisect_left(SECONDS, value)] += 1
        self.total += value

    def buckets(self) -> list[tuple[str, float]]:
        """Cumulative ``(le, count)`` pairs, ending with ``+Inf``."""
        out: list[tuple[str, float]] = []
        running = 0
        for bound, count in zip((*SECONDS, math.inf), self.counts):
            running += count
            out.append((floatToGoString(bound), running))
        return out


class _Series:
    """One deployment's counts as plain numbers, turned into metric families only when scraped."""

    __slots__ = ("requests", "input_tokens", "output_tokens", "cached_tokens", "ttft", "latency", "errors",
                 "drafted", "draft_accepted")

    def __init__(self) -> None:
        self.requests: dict[str, int] = {}
        self.input_tokens = self.output_tokens = self.cached_tokens = 0
        self.ttft = _Histogram()
        self.latency = _Histogram()
        self.errors: dict[str, int] = {}
        self.drafted = self.draft_accepted = 0


class Metrics(Collector):
    """The app's metrics; implements ``PipelineObserver``.

    Counting a request is a few additions to plain numbers (the event loop is the only
    writer); prometheus-client's own counters take a lock and do more per call, which
    showed on a gateway's every request. The registry reads them at scrape time.
    """

    def __init__(self, deployments: Callable[[], Sequence["Deployment"]] = lambda: ()) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._series: dict[tuple[str, str], _Series] = {}
        self.registry.register(self)
        self.registry.register(_Queues(deployments))

    def _of(self, deployment: "Deployment") -> _Series:
        key = (deployment.card.id, deployment.name)
        series = self._series.get(key)
        if series is None:
            series = self._series[key] = _Series()
        return series

    def attempt_failed(self, deployment: "Deployment", failure: "BackendFailure") -> None:
        """Count an upstream error (the request moved on to another deployment or failed)."""
        code = failure.code or (str(failure.status) if failure.status else "error")
        errors = self._of(deployment).errors
        errors[code] = errors.get(code, 0) + 1

    def closed(self, generation: "Generation") -> None:
        """Count a finished generation."""
        stats = generation.stats
        series = self._of(generation.deployment)
        series.requests[stats.status] = series.requests.get(stats.status, 0) + 1
        usage = stats.usage
        series.input_tokens += usage.input_tokens
        series.output_tokens += usage.output_tokens
        series.cached_tokens += usage.cached_tokens
        series.drafted += usage.draft_tokens
        series.draft_accepted += usage.draft_accepted_tokens
        if stats.ttft_ms is not None:
            series.ttft.observe(stats.ttft_ms / 1000)
        if stats.finished is not None:
            series.latency.observe(stats.finished - stats.started)

    def describe(self) -> Iterator[Metric]:
        """The families this collector yields (registered before any request is counted)."""
        return self.collect()

    def collect(self) -> Iterator[Metric]:
        """The counts as Prometheus metric families."""
        requests = CounterMetricFamily("shoal_requests", "Generations by final status", labels=(*LABELS, "status"))
        tokens = CounterMetricFamily("shoal_tokens", "Tokens by kind (input, output, cached)",
                                     labels=(*LABELS, "kind"))
        hits = CounterMetricFamily("shoal_cache_hit_tokens", "Input tokens served from the prompt cache",
                                   labels=LABELS)
        ttft = HistogramMetricFamily("shoal_time_to_first_token_seconds", "Time to first token", labels=LABELS)
        latency = HistogramMetricFamily("shoal_request_latency_seconds", "Generation latency", labels=LABELS)
        errors = CounterMetricFamily("shoal_upstream_errors", "Deployment failures before the first byte",
                                     labels=(*LABELS, "code"))
        drafts = CounterMetricFamily("shoal_speculative_tokens", "Speculative decoding: tokens drafted, and of "
                                     "those accepted (acceptance rate = accepted / drafted)",
                                     labels=(*LABELS, "outcome"))
        for (model, name), series in self._series.items():
            labels = [model, name]
            for status, count in series.requests.items():
                requests.add_metric([*labels, status], count)
            for kind, count in (("input", series.input_tokens), ("output", series.output_tokens),
                                ("cached", series.cached_tokens)):
                if count:
                    tokens.add_metric([*labels, kind], count)
            if series.cached_tokens:
                hits.add_metric(labels, series.cached_tokens)
            if series.requests:
                ttft.add_metric(labels, series.ttft.buckets(), series.ttft.total)
                latency.add_metric(labels, series.latency.buckets(), series.latency.total)
            for code, count in series.errors.items():
                errors.add_metric([*labels, code], count)
            if series.drafted:
                drafts.add_metric([*labels, "drafted"], series.drafted)
                drafts.add_metric([*labels, "accepted"], series.draft_accepted)
        yield from (requests, tokens, hits, ttft, latency, errors, drafts)

    def render(self) -> bytes:
        """The Prometheus text exposition."""
        return generate_latest(self.registry)


def ready(deployments: Sequence["Deployment"]) -> tuple[bool, dict[str, Any]]:
    """Ready when every model has a deployment that is up and whose circuit is not open."""
    models: dict[str, bool] = {}
    for dep in deployments:
        models[dep.card.id] = models.get(dep.card.id, False) or (dep.up and dep.breaker.state != "open")
    return bool(models) and all(models.values()), {"models": models}
