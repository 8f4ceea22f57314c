"""Console sessions without HTTP: signing, expiry, ending, CSRF tokens."""

from __future__ import annotations

from shoal.console.session import ConsoleSessions


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


def test_a_session_verifies_until_it_expires() -> None:
    clock = Clock()
    sessions = ConsoleSessions("tok", ttl=60, clock=clock)
    value, session = sessions.create()
    assert sessions.verify(value) == session
    clock.now += 59
    assert sessions.verify(value) == session
    clock.now += 1
    assert sessions.verify(value) is None


def test_tampering_breaks_the_signature() -> None:
    sessions = ConsoleSessions("tok")
    value, _ = sessions.create()
    version, expires, nonce, sig = value.split(".")
    assert sessions.verify(f"{version}.{int(expires) + 3600}.{nonce}.{sig}") is None
    assert sessions.verify(f"{version}.{expires}.{nonce}x.{sig}") is None
    assert sessions.verify(f"{version}.{expires}.{nonce}.{sig[:-1]}{'1' if sig.endswith('0') else '0'}") is None
    assert sessions.verify("") is None and sessions.verify("garbage") is None


def test_the_key_comes_from_the_admin_token() -> None:
    value, _ = ConsoleSessions("tok").create()
    assert ConsoleSessions("tok").verify(value) is not None, "replicas with the same token agree"
    assert ConsoleSessions("other").verify(value) is None, "a new admin token ends every session"
    assert ConsoleSessions(None).verify(value) is None and not ConsoleSessions(None).enabled


def test_csrf_tokens_differ_per_session_and_ended_sessions_stay_ended() -> None:
    sessions = ConsoleSessions("tok")
    first_value, first = sessions.create()
    _, second = sessions.create()
    assert sessions.csrf_token(first) != sessions.csrf_token(second)
    assert "tok" not in first_value and "tok" not in sessions.csrf_token(first)
    sessions.end(first)
    assert sessions.verify(first_value) is None
