"""Prometheus metrics, per model and deployment, in one registry per app (no module globals).

Counted when a generation ends (``PipelineObserver.closed``): requests by status,
tokens (input / output / cached), time to first token and latency histograms;
when a deployment fails before its first byte: upstream errors. Queue depth and
running requests are read from the admission queues at scrape time.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from shoal.backends.base import BackendFailure
    from shoal.core.pipeline import Deployment, Generation

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
        loaded = GaugeMetricFamily("shoal_model_loaded", "1 while a local model is in memory", labels=LABELS)
        loads = CounterMetricFamily("shoal_model_loads", "Loads of a serverless local model", labels=LABELS)
        unloads = CounterMetricFamily("shoal_model_unloads", "Unloads (idle or evicted) of a serverless local model",
                                      labels=LABELS)
        for dep in self._deployments():
            labels = [dep.card.id, dep.name]
            queued.add_metric(labels, dep.admission.queued)
            running.add_metric(labels, dep.admission.running)
            open_.add_metric(labels, 1.0 if dep.breaker.state == "open" else 0.0)
            status = dep.status()
            if status is not None:
                loaded.add_metric(labels, 1.0 if status.get("state") == "loaded" else 0.0)
                if "loads" in status:
                    loads.add_metric(labels, status["loads"])
                    unloads.add_metric(labels, status["unloads"])
        yield from (queued, running, open_, loaded, loads, unloads)


class _Series:
    """One deployment's labelled children, looked up once (``labels()`` is the costly part of counting)."""

    def __init__(self, metrics: "Metrics", labels: tuple[str, str]) -> None:
        self._metrics, self._labels = metrics, labels
        self._by_status: dict[str, Any] = {}
        self.input_tokens = metrics.tokens.labels(*labels, "input")
        self.output_tokens = metrics.tokens.labels(*labels, "output")
        self.cached_tokens = metrics.tokens.labels(*labels, "cached")
        self.cache_hits = metrics.cache_hits.labels(*labels)
        self.ttft = metrics.ttft.labels(*labels)
        self.latency = metrics.latency.labels(*labels)

    def status(self, status: str) -> Any:
        """The request counter of ``status``."""
        child = self._by_status.get(status)
        if child is None:
            child = self._by_status[status] = self._metrics.requests.labels(*self._labels, status)
        return child


class Metrics:
    """The app's metrics; implements ``PipelineObserver``."""

    def __init__(self, deployments: Callable[[], Sequence["Deployment"]] = lambda: ()) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter("shoal_requests", "Generations by final status", (*LABELS, "status"), registry=r)
        self.tokens = Counter("shoal_tokens", "Tokens by kind (input, output, cached)", (*LABELS, "kind"),
                              registry=r)
        self.cache_hits = Counter("shoal_cache_hit_tokens", "Input tokens served from the prompt cache", LABELS,
                                  registry=r)
        self.ttft = Histogram("shoal_time_to_first_token_seconds", "Time to first token", LABELS, buckets=SECONDS,
                              registry=r)
        self.latency = Histogram("shoal_request_latency_seconds", "Generation latency", LABELS, buckets=SECONDS,
                                 registry=r)
        self.upstream_errors = Counter("shoal_upstream_errors", "Deployment failures before the first byte",
                                       (*LABELS, "code"), registry=r)
        r.register(_Queues(deployments))
        self._series: dict[tuple[str, str], _Series] = {}

    def attempt_failed(self, deployment: "Deployment", failure: "BackendFailure") -> None:
        """Count an upstream error (the request moved on to another deployment or failed)."""
        code = failure.code or (str(failure.status) if failure.status else "error")
        self.upstream_errors.labels(deployment.card.id, deployment.name, code).inc()

    def closed(self, generation: "Generation") -> None:
        """Count a finished generation."""
        dep, stats = generation.deployment, generation.stats
        series = self._series.get((dep.card.id, dep.name))
        if series is None:
            series = self._series[(dep.card.id, dep.name)] = _Series(self, (dep.card.id, dep.name))
        series.status(stats.status).inc()
        usage = stats.usage
        if usage.input_tokens:
            series.input_tokens.inc(usage.input_tokens)
        if usage.output_tokens:
            series.output_tokens.inc(usage.output_tokens)
        if usage.cached_tokens:
            series.cached_tokens.inc(usage.cached_tokens)
            series.cache_hits.inc(usage.cached_tokens)
        if stats.ttft_ms is not None:
            series.ttft.observe(stats.ttft_ms / 1000)
        if stats.finished is not None:
            series.latency.observe(stats.finished - stats.started)

    def render(self) -> bytes:
        """The Prometheus text exposition."""
        return generate_latest(self.registry)


def ready(deployments: Sequence["Deployment"]) -> tuple[bool, dict[str, Any]]:
    """Ready when every model has a deployment whose circuit is not open."""
    models: dict[str, bool] = {}
    for dep in deployments:
        models[dep.card.id] = models.get(dep.card.id, False) or dep.breaker.state != "open"
    return bool(models) and all(models.values()), {"models": models}
