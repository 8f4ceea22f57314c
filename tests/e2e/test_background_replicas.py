"""Background responses across two ``shoal serve`` replicas on one fresh PostgreSQL database.

A cancel or delete sent to replica B stops the run on replica A (at A's next lease
renewal) and stands; a replica killed with SIGKILL has its runs failed by the other
within the lease; a replica (re)started with a fresh or a shared data directory fails
nothing another replica is still running. Leases are 2 s here (renewed every 0.67 s).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.services import fresh_postgres

from .conftest import MODEL_ID, ServerFactory, ServerProcess

pytestmark = pytest.mark.e2e

LEASE = 2.0
TICK = LEASE / 3
# Long enough to still be running when the test acts on it. At temperature 0 the 135M test model
# answers this with a loop that only max_output_tokens ends (3000 tokens, about 50 s here); asked
# to count, it stops after 20 numbers, which ended the run before the test could look at it.
LONG = {"model": MODEL_ID, "input": "What is the capital of France?", "max_output_tokens": 3000,
        "background": True, "temperature": 0}


@pytest.fixture
def replica(server_factory: ServerFactory, tmp_path: Path) -> Iterator[object]:
    """Starts a replica on the test's fresh database: ``replica(env=...)``."""
    config = tmp_path / "shoal.yaml"
    config.write_text(f"response_lease_seconds: {LEASE}\n")
    with fresh_postgres() as url:
        def start(env: dict[str, str] | None = None) -> ServerProcess:
            return server_factory("--database-url", url, "--parallel", "2", "--ctx-per-slot", "4096",
                                  "--config", str(config), env=env)

        yield start


def running_requests(server: ServerProcess) -> float:
    """Generations running on ``server`` now (its /metrics)."""
    with server.http() as http:
        text = http.get(f"{server.root_url}/metrics").text
    return sum(s.value for family in text_string_to_metric_families(text) for s in family.samples
               if s.name == "shoal_running_requests")


def start_long_run(server: ServerProcess) -> str:
    """A background response running on ``server`` (seen in_progress there, and generating)."""
    with server.client() as c:
        rid = c.responses.create(**LONG).id  # type: ignore[call-overload]
        deadline = time.monotonic() + 30
        while c.responses.retrieve(rid).status != "in_progress" or not running_requests(server):
            assert time.monotonic() < deadline, "the background response never started"
            time.sleep(0.05)
    return rid


def wait_until(check, timeout: float, what: str) -> float:  # type: ignore[no-untyped-def]
    """Poll ``check()`` (bounded) until true; returns the seconds it took."""
    started = time.monotonic()
    while not check():
        assert time.monotonic() - started < timeout, f"{what} within {timeout:.1f} s"
        time.sleep(0.05)
    return time.monotonic() - started


def test_a_cancel_sent_to_b_stops_the_run_on_a(replica) -> None:  # type: ignore[no-untyped-def]
    a, b = replica(), replica()
    rid = start_long_run(a)
    with a.client() as ca, b.client() as cb:
        assert cb.responses.cancel(rid).status == "cancelled"
        took = wait_until(lambda: running_requests(a) == 0, LEASE + 3, "A stopped generating")
        assert took < TICK + 3.0  # next renewal, plus slack for a loaded machine
        time.sleep(2 * TICK)  # A's run has ended: a final write of its own would have landed by now
        assert ca.responses.retrieve(rid).status == "cancelled"
        assert cb.responses.retrieve(rid).status == "cancelled"
    assert a.wait_for_log(f"background response {rid} was cancelled elsewhere")


def test_a_delete_sent_to_b_stops_the_run_on_a_and_stays_deleted(replica) -> None:  # type: ignore[no-untyped-def]
    a, b = replica(), replica()
    rid = start_long_run(a)
    with a.client() as ca, b.client() as cb:
        assert cb.responses.delete(rid) is None
        wait_until(lambda: running_requests(a) == 0, LEASE + 3, "A stopped generating")
        time.sleep(2 * TICK)
        for c in (ca, cb):
            with pytest.raises(openai.NotFoundError):
                c.responses.retrieve(rid)


def test_the_run_of_a_killed_replica_is_failed_by_the_other_within_the_lease(replica) -> None:  # type: ignore[no-untyped-def]
    a, b = replica(), replica()
    rid = start_long_run(a)
    assert a.proc is not None
    a.proc.kill()  # SIGKILL: no shutdown, the row stays in_progress with a lease nobody renews
    a.proc.wait(timeout=10)
    with b.client() as cb:
        took = wait_until(lambda: cb.responses.retrieve(rid).status == "failed", LEASE + 5,
                          "B failed A's orphan")
        failed = cb.responses.retrieve(rid)
    # The lease ran out at most LEASE after A's last renewal, and B sweeps every TICK.
    assert took <= LEASE + TICK + 2.0, took  # slack for a loaded machine
    assert failed.error is not None and failed.error.code == "server_error"
    assert "stopped" in failed.error.message
    assert b.wait_for_log("marked 1 background response(s) failed")


def test_a_restart_with_a_fresh_or_shared_data_dir_fails_nothing_b_runs(replica) -> None:  # type: ignore[no-untyped-def]
    b = replica()
    rid = start_long_run(b)
    fresh = replica()
    shared = replica(env={"SHOAL_HOME": str(b.workdir / "home")})  # the same data dir as B
    time.sleep(LEASE + 2 * TICK)  # long enough for any sweeper to fail a lease B had stopped renewing
    with b.client() as cb:
        assert cb.responses.retrieve(rid).status == "in_progress"
        assert running_requests(b) == 1
        for other in (fresh, shared):
            with other.client() as c:
                assert c.responses.retrieve(rid).status != "failed"
        assert cb.responses.cancel(rid).status == "cancelled"
