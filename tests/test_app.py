"""``create_app()``: the probes a load balancer and an orchestrator use."""

from __future__ import annotations

from tests.scripted import ScriptedBackend, make_app, text_script


def test_ready_turns_503_while_draining_and_health_stays_200() -> None:
    """A replica that got SIGTERM (``app.state.draining``) tells the load balancer to stop sending."""
    with make_app(ScriptedBackend(text_script("a"))) as client:
        assert client.get("/ready").status_code == 200
        client.app.state.draining = True  # what the server's SIGTERM handler sets
        r = client.get("/ready")
        assert r.status_code == 503 and r.json() == {"status": "draining"}
        # Liveness is another question: a draining replica must not be restarted mid-drain.
        assert client.get("/health").status_code == 200
