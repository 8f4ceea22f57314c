"""Helpers of the end-to-end key / usage / multi-replica tests: the CLI, the admin API, secret checks."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import time
from collections.abc import Iterable
from typing import Any

import httpx

ADMIN_TOKEN = "adm-e2e-" + hashlib.sha256(b"shoal admin token for tests").hexdigest()[:24]
PRICES_YAML = "prices:\n  smollm2: {input: 1000, cached_input: 100, output: 4000}\n"
"""USD per 1M tokens: absurdly high, so a few tokens cost visibly."""


def cli(server: Any, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run ``shoal ARGS`` against ``server``'s database (same environment)."""
    proc = subprocess.run([sys.executable, "-m", "shoal.cli", *args], env=server.environment(),
                          capture_output=True, text=True, timeout=60)
    if check:
        assert proc.returncode == 0, (proc.returncode, proc.stdout, proc.stderr)
    return proc


def cli_create_key(server: Any, *args: str) -> dict[str, Any]:
    """``shoal keys create --format json ARGS``: the new key, with its secret."""
    return dict(json.loads(cli(server, "keys", "create", "--format", "json", *args).stdout))


def admin(server: Any) -> httpx.Client:
    """An httpx client on ``server``'s admin API."""
    return httpx.Client(base_url=server.root_url + "/admin", timeout=30,
                        headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})


def admin_create_key(server: Any, **spec: Any) -> dict[str, Any]:
    """``POST /admin/keys``: the new key, with its secret."""
    with admin(server) as http:
        r = http.post("/keys", json={"name": "e2e", **spec})
        assert r.status_code == 201, r.text
        return dict(r.json())


def key_usage(server: Any, key_id: str, at_least: int = 0, timeout: float = 10.0) -> dict[str, Any]:
    """The usage summary row of one key (zeros if it has none).

    Replicas write usage rows in short batches, so with ``at_least`` this polls
    (bounded) until that many requests of the key are on record.
    """
    deadline = time.monotonic() + timeout
    while True:
        with admin(server) as http:
            rows = http.get("/usage", params={"by": "key"}).json()["data"]
        found = next((dict(row) for row in rows if row["key"] == key_id), {"requests": 0, "cost_usd": 0.0})
        if found["requests"] >= at_least or time.monotonic() > deadline:
            return found
        time.sleep(0.1)


def key_records(server: Any, key_id: str) -> list[dict[str, Any]]:
    """A key's usage records, newest first."""
    with admin(server) as http:
        return list(http.get("/usage/records", params={"key_id": key_id}).json()["data"])


def fresh_minute(margin: float = 15.0) -> None:
    """Wait (< ``margin`` s) if the current rate-limit minute is about to end, so a test fits in one window."""
    left = 60 - time.time() % 60
    if left < margin:
        time.sleep(left + 0.2)


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def assert_no_secrets(log: str, secrets: Iterable[str]) -> None:
    """Neither any secret nor its hash (nor the first 16 hex of it) appears in ``log``."""
    for secret in secrets:
        digest = sha256(secret)
        for needle, what in ((secret, "a key"), (digest, "a key hash"), (digest[:16], "a key hash prefix")):
            assert needle not in log, f"{what} appears in the server log"
