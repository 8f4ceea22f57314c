"""Prometheus metrics: what one finished generation adds, per model and deployment."""

from __future__ import annotations

from types import SimpleNamespace

from prometheus_client.parser import text_string_to_metric_families

from shoal.core.types import Usage
from shoal.metrics import Metrics


def finished(model: str, name: str, status: str, usage: Usage, ttft_ms: float | None = 12.0) -> SimpleNamespace:
    stats = SimpleNamespace(status=status, usage=usage, ttft_ms=ttft_ms, started=10.0, finished=10.5)
    return SimpleNamespace(deployment=SimpleNamespace(card=SimpleNamespace(id=model), name=name), stats=stats)


def value(text: str, name: str, **labels: str) -> float:
    """The one sample called ``name`` with exactly these labels."""
    (found,) = [s.value for family in text_string_to_metric_families(text) for s in family.samples
                if s.name == name and s.labels == labels]
    return float(found)


def test_each_generation_is_counted_under_its_own_model_and_deployment() -> None:
    metrics = Metrics()
    metrics.closed(finished("m", "m/a", "completed", Usage(input_tokens=10, output_tokens=4, cached_tokens=6)))
    metrics.closed(finished("m", "m/a", "completed", Usage(input_tokens=5, output_tokens=1)))
    metrics.closed(finished("m", "m/a", "failed", Usage(), ttft_ms=None))
    metrics.closed(finished("n", "n/b", "incomplete", Usage(input_tokens=7, output_tokens=9)))
    text = metrics.render().decode()
    a, b = {"model": "m", "deployment": "m/a"}, {"model": "n", "deployment": "n/b"}
    assert value(text, "shoal_requests_total", **a, status="completed") == 2
    assert value(text, "shoal_requests_total", **a, status="failed") == 1
    assert value(text, "shoal_requests_total", **b, status="incomplete") == 1
    assert value(text, "shoal_tokens_total", **a, kind="input") == 15
    assert value(text, "shoal_tokens_total", **a, kind="output") == 5
    assert value(text, "shoal_tokens_total", **a, kind="cached") == 6
    assert value(text, "shoal_cache_hit_tokens_total", **a) == 6
    assert value(text, "shoal_tokens_total", **b, kind="output") == 9
    assert value(text, "shoal_time_to_first_token_seconds_count", **a) == 2
    assert value(text, "shoal_request_latency_seconds_count", **a) == 3
    assert value(text, "shoal_request_latency_seconds_sum", **a) == 1.5


def test_histogram_buckets_are_cumulative_and_a_value_on_a_bound_counts_in_it() -> None:
    metrics = Metrics()
    for ttft_ms in (10.0, 10.5, 300.0, 999_000.0):  # 0.01 s exactly, just above, 0.3 s, past the last bound
        metrics.closed(finished("m", "m/a", "completed", Usage(), ttft_ms=ttft_ms))
    text = metrics.render().decode()
    a = {"model": "m", "deployment": "m/a"}
    bucket = "shoal_time_to_first_token_seconds_bucket"
    assert value(text, bucket, **a, le="0.01") == 1
    assert value(text, bucket, **a, le="0.025") == 2
    assert value(text, bucket, **a, le="0.25") == 2
    assert value(text, bucket, **a, le="0.5") == 3
    assert value(text, bucket, **a, le="120.0") == 3
    assert value(text, bucket, **a, le="+Inf") == 4
    assert value(text, "shoal_time_to_first_token_seconds_sum", **a) == 0.01 + 0.0105 + 0.3 + 999.0
    assert "shoal_tokens_total{" not in text  # no tokens counted, no token series


def test_upstream_errors_by_code() -> None:
    metrics = Metrics()
    dep = SimpleNamespace(card=SimpleNamespace(id="m"), name="m/a")
    for failure in (SimpleNamespace(code="upstream_timeout", status=None), SimpleNamespace(code=None, status=503),
                    SimpleNamespace(code="upstream_timeout", status=None)):
        metrics.attempt_failed(dep, failure)  # type: ignore[arg-type]
    text = metrics.render().decode()
    assert value(text, "shoal_upstream_errors_total", model="m", deployment="m/a", code="upstream_timeout") == 2
    assert value(text, "shoal_upstream_errors_total", model="m", deployment="m/a", code="503") == 1


def test_usage_rows_pending_and_dropped_are_exposed() -> None:
    from shoal.metrics import UsageQueue

    metrics = Metrics()
    usage = SimpleNamespace(pending=3, dropped=0)
    metrics.registry.register(UsageQueue(usage))  # type: ignore[arg-type]
    assert value(metrics.render().decode(), "shoal_usage_rows_pending") == 3
    usage.dropped = 15
    assert value(metrics.render().decode(), "shoal_usage_rows_dropped_total") == 15
