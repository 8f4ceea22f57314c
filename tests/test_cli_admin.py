"""``shoal keys ...`` and ``shoal usage`` against a database, no server needed."""

from __future__ import annotations

import asyncio
import csv
import io
import json
from pathlib import Path

import pytest

from shoal.auth.keys import KEY_PREFIX, hash_key
from shoal.cli import main
from shoal.storage.db import Database
from shoal.storage.usage import UsageRecord, UsageStore


@pytest.fixture
def url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'shoal.db'}"


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_create_prints_the_key_once(url: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "keys", "create", "--name", "ci", "--models", "a,b", "--rpm", "5", "--tpm", "900",
                         "--budget", "2.5", "--period", "day", "--database-url", url)
    assert code == 0
    secret = out.strip()
    assert secret.startswith(KEY_PREFIX) and "\n" not in secret
    assert "only time" in err and "models: a,b; rpm: 5; tpm: 900; budget: $2.5/day" in err
    code, out, _ = run(capsys, "keys", "list", "--database-url", url)
    assert code == 0 and secret not in out and hash_key(secret) not in out
    assert secret[:len(KEY_PREFIX) + 4] + "…" in out and "ci" in out and "a,b" in out and "$2.5/day" in out


def test_list_revoke_rotate_json(url: str, capsys: pytest.CaptureFixture[str]) -> None:
    _, out, _ = run(capsys, "keys", "create", "--name", "svc", "--format", "json", "--database-url", url)
    created = json.loads(out)
    assert created["key"].startswith(KEY_PREFIX) and created["budget_usd"] is None
    code, out, err = run(capsys, "keys", "rotate", created["id"], "--format", "json", "--database-url", url)
    rotated = json.loads(out)
    assert code == 0 and rotated["id"] == created["id"] and rotated["key"] != created["key"]
    code, out, _ = run(capsys, "keys", "revoke", created["id"], "--database-url", url)
    assert code == 0 and "Revoked key " + created["id"] in out
    listed = json.loads(run(capsys, "keys", "list", "--format", "json", "--database-url", url)[1])["data"]
    assert [(k["id"], k["status"]) for k in listed] == [(created["id"], "revoked")]
    assert "(no keys yet" in run(capsys, "keys", "list", "--active", "--database-url", url)[1]
    code, _, err = run(capsys, "keys", "rotate", created["id"], "--database-url", url)
    assert code == 1 and "revoked" in err
    code, _, err = run(capsys, "keys", "revoke", "key_nope", "--database-url", url)
    assert code == 1 and "key_nope" in err


@pytest.mark.parametrize("argv", [["--budget", "-3"], ["--rpm", "0"], ["--period", "day"], ["--models", ","]])
def test_invalid_create(url: str, capsys: pytest.CaptureFixture[str], argv: list[str]) -> None:
    code, out, err = run(capsys, "keys", "create", "--name", "x", *argv, "--database-url", url)
    assert code == 1 and out == "" and err.startswith("shoal: ")


def test_data_dir_and_env_resolution(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SHOAL_DATABASE_URL", raising=False)
    assert run(capsys, "keys", "create", "--name", "d", "--data-dir", str(tmp_path / "home"))[0] == 0
    assert (tmp_path / "home" / "shoal.db").is_file()
    monkeypatch.setenv("SHOAL_DATABASE_URL", f"sqlite:///{tmp_path / 'home' / 'shoal.db'}")
    assert " d " in run(capsys, "keys", "list")[1]


def seed_usage(url: str) -> None:
    async def go() -> None:
        db = Database(url)
        await db.prepare()
        store = UsageStore(db)
        for key, model, cost in (("key_a", "m1", 0.5), ("key_a", "m2", 0.25), (None, "m1", 0.0)):
            await store.add(UsageRecord(key_id=key, model=model, deployment="local:" + model, endpoint="/v1/x",
                                        status="completed", input_tokens=10, cached_tokens=2, output_tokens=3,
                                        ttft_ms=5.0, latency_ms=9.0, cost_usd=cost))
        await db.aclose()

    asyncio.run(go())


def test_usage_formats(url: str, capsys: pytest.CaptureFixture[str]) -> None:
    seed_usage(url)
    code, out, _ = run(capsys, "usage", "--database-url", url)
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split()[:4] == ["key", "name", "requests", "failed"]
    assert any(line.startswith("key_a") and " 0.75 " in line for line in lines)
    assert lines[-1].startswith("total")
    data = json.loads(run(capsys, "usage", "--by", "model", "--format", "json", "--database-url", url)[1])
    assert data["by"] == "model" and {r["model"]: r["requests"] for r in data["data"]} == {"m1": 2, "m2": 1}
    rows = list(csv.DictReader(io.StringIO(run(capsys, "usage", "--by", "day", "--format", "csv",
                                               "--since", "1d", "--database-url", url)[1])))
    assert len(rows) == 1 and rows[0]["requests"] == "3" and float(rows[0]["cost_usd"]) == pytest.approx(0.75)
    assert "(no usage" in run(capsys, "usage", "--since", "2999-01-01", "--database-url", url)[1]
    code, _, err = run(capsys, "usage", "--since", "soon", "--database-url", url)
    assert code == 2 and "7d" in err
