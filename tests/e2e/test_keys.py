"""Model access keys, scopes, rate limits and budgets against a real ``shoal serve`` (in-process mode).

One server for the module: SQLite, an admin token, a static key, two models
(``smollm2`` and ``smollm2-b``, the same file) and prices in a config file.
"""

from __future__ import annotations

import asyncio
import subprocess
import time
from pathlib import Path

import httpx
import openai
import pytest

from shoal.core.types import GenerationRequest, Message, SamplingParams
from shoal.usage.estimate import max_cost
from shoal.usage.pricing import Pricing
from tests.tenancy import (
    ADMIN_TOKEN,
    PRICES_YAML,
    admin,
    admin_create_key,
    assert_no_secrets,
    cli,
    cli_create_key,
    fresh_minute,
    key_usage,
)

from .conftest import MODEL_ID, ServerFactory, ServerProcess

pytestmark = pytest.mark.e2e

STATIC_KEY = "static-e2e-key-0123456789"
PRICE = Pricing(input=1000, cached_input=100, output=4000)
CTX = 1024
HI = [{"role": "user", "content": "hi"}]


@pytest.fixture(scope="module")
def secrets_seen() -> list[str]:
    """Every secret handed out in this module (checked against the server log at the end)."""
    return [ADMIN_TOKEN, STATIC_KEY]


@pytest.fixture(scope="module")
def srv(module_server_factory: ServerFactory, tmp_path_factory: pytest.TempPathFactory,
        test_model_path: Path) -> ServerProcess:
    config = tmp_path_factory.mktemp("cfg") / "shoal.yaml"
    config.write_text(PRICES_YAML)
    return module_server_factory(
        "--model", f"smollm2-b={test_model_path}", "--parallel", "2", "--ctx-per-slot", str(CTX),
        "--api-key", STATIC_KEY, "--config", str(config), "--log-level", "debug",
        env={"SHOAL_ADMIN_TOKEN": ADMIN_TOKEN})


@pytest.fixture
def new_key(srv: ServerProcess, secrets_seen: list[str]):  # type: ignore[no-untyped-def]
    """Create a key with the CLI; returns (key json, openai client)."""
    clients: list[openai.OpenAI] = []

    def make(*args: str) -> tuple[dict, openai.OpenAI]:
        key = cli_create_key(srv, "--name", "e2e", *args)
        secrets_seen.append(key["key"])
        client = srv.client(api_key=key["key"])
        clients.append(client)
        return key, client

    yield make
    for c in clients:
        c.close()


def test_cli_key_works_with_the_openai_client(srv: ServerProcess, new_key) -> None:  # type: ignore[no-untyped-def]
    proc = cli(srv, "keys", "create", "--name", "plain")
    secret = proc.stdout.strip()
    assert secret.startswith("sk-shoal-") and len(secret) >= 41
    with srv.client(api_key=secret) as client:
        out = client.chat.completions.create(model=MODEL_ID, messages=HI, max_tokens=2)
        assert out.usage is not None and out.usage.completion_tokens >= 1
    listing = cli(srv, "keys", "list").stdout
    assert "plain" in listing and secret not in listing and secret[:13] + "…" in listing
    cli(srv, "keys", "revoke", next(line.split()[0] for line in listing.splitlines() if " plain " in line))


def test_wrong_missing_and_admin_tokens_are_401(srv: ServerProcess) -> None:
    for key in ("sk-shoal-not-a-real-key", ADMIN_TOKEN):
        with srv.client(api_key=key) as client, pytest.raises(openai.AuthenticationError):
            client.models.list()
    r = httpx.get(srv.base_url + "/models")
    assert r.status_code == 401 and r.json()["error"]["code"] == "missing_api_key"


def test_static_keys_keep_working(srv: ServerProcess) -> None:
    with srv.client(api_key=STATIC_KEY) as client:
        assert sorted(m.id for m in client.models.list().data) == [MODEL_ID, "smollm2-b"]
        raw = client.chat.completions.with_raw_response.create(model="smollm2-b", messages=HI, max_tokens=1)
        assert raw.status_code == 200
        assert not any(h.startswith(("x-ratelimit", "ratelimit")) for h in raw.headers)  # unlimited


def test_scoped_key_sees_only_its_models(srv: ServerProcess, new_key) -> None:  # type: ignore[no-untyped-def]
    _, client = new_key("--models", MODEL_ID)
    assert [m.id for m in client.models.list().data] == [MODEL_ID]
    with pytest.raises(openai.NotFoundError) as hidden:
        client.chat.completions.create(model="smollm2-b", messages=HI, max_tokens=1)
    with pytest.raises(openai.NotFoundError) as unknown:
        client.chat.completions.create(model="no-such-model", messages=HI, max_tokens=1)
    h, u = hidden.value.response.json()["error"], unknown.value.response.json()["error"]
    assert h["code"] == u["code"] == "model_not_found" and h["type"] == u["type"] and h["param"] == u["param"]
    assert h["message"] == u["message"].replace("no-such-model", "smollm2-b")
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("smollm2-b")
    with pytest.raises(openai.NotFoundError):
        client.responses.create(model="smollm2-b", input="hi", max_output_tokens=16)
    assert client.chat.completions.create(model=MODEL_ID, messages=HI, max_tokens=1).choices


def test_admin_api_rotate_and_revoke_take_effect_at_once(srv: ServerProcess,
                                                          secrets_seen: list[str]) -> None:
    key = admin_create_key(srv, name="rotating")
    secrets_seen.append(key["key"])
    with srv.client(api_key=key["key"]) as old:
        old.models.list()
        with admin(srv) as http:
            listed = http.get("/keys").json()["data"]
            assert key["id"] in [k["id"] for k in listed] and key["key"] not in str(listed)
            rotated = http.post(f"/keys/{key['id']}/rotate").json()
        secrets_seen.append(rotated["key"])
        with pytest.raises(openai.AuthenticationError):
            old.models.list()
    with srv.client(api_key=rotated["key"]) as new:
        new.models.list()
        with admin(srv) as http:
            assert http.post(f"/keys/{key['id']}/revoke").json()["status"] == "revoked"
        with pytest.raises(openai.AuthenticationError) as info:
            new.models.list()
        assert info.value.code == "revoked_api_key"


def test_cli_revoke_reaches_the_running_server_within_seconds(srv: ServerProcess, new_key) -> None:  # type: ignore[no-untyped-def]
    key, client = new_key()
    client.models.list()  # now cached by the server
    cli(srv, "keys", "revoke", key["id"])
    revoked_at = time.monotonic()
    while True:
        try:
            client.models.list()
        except openai.AuthenticationError:
            break
        assert time.monotonic() - revoked_at < 4.0, "revocation took longer than the key cache time"
        time.sleep(0.1)


RL_HEADERS = ("x-ratelimit-limit-requests", "x-ratelimit-remaining-requests", "x-ratelimit-reset-requests",
              "x-ratelimit-limit-tokens", "x-ratelimit-remaining-tokens", "x-ratelimit-reset-tokens",
              "ratelimit-limit", "ratelimit-remaining", "ratelimit-reset")


def test_requests_per_minute_with_headers_on_every_response(srv: ServerProcess, new_key) -> None:  # type: ignore[no-untyped-def]
    key, client = new_key("--rpm", "4", "--tpm", "100000")
    fresh_minute()
    seen = [
        client.models.with_raw_response.list(),
        client.chat.completions.with_raw_response.create(model=MODEL_ID, messages=HI, max_tokens=1),
        client.responses.with_raw_response.create(model=MODEL_ID, input="hi", max_output_tokens=16),
    ]
    with client.chat.completions.with_streaming_response.create(model=MODEL_ID, messages=HI, max_tokens=1,
                                                                stream=True) as streamed:
        seen.append(streamed)
        for _ in streamed.iter_lines():
            pass
    for raw in seen:
        missing = [h for h in RL_HEADERS if h not in raw.headers]
        assert not missing, missing
    assert [int(r.headers["x-ratelimit-remaining-requests"]) for r in seen] == [3, 2, 1, 0]
    assert int(seen[0].headers["ratelimit-reset"]) > time.time()
    with pytest.raises(openai.RateLimitError) as info:
        client.chat.completions.create(model=MODEL_ID, messages=HI, max_tokens=1)
    err = info.value
    assert err.status_code == 429 and err.code == "rate_limit_exceeded"
    assert 1 <= int(err.response.headers["retry-after"]) <= 60
    assert all(h in err.response.headers for h in RL_HEADERS)
    with pytest.raises(openai.RateLimitError) as info:  # a 404 would be rate limited too: limits come first
        client.models.retrieve("nope")


def test_tokens_per_minute(srv: ServerProcess, new_key) -> None:  # type: ignore[no-untyped-def]
    _, client = new_key("--tpm", "120")
    fresh_minute()
    statuses = []
    for _ in range(6):
        try:
            raw = client.chat.completions.with_raw_response.create(model=MODEL_ID, messages=HI, max_tokens=8)
            statuses.append(int(raw.headers["x-ratelimit-remaining-tokens"]))
        except openai.RateLimitError as exc:
            assert "tokens per minute" in exc.message and int(exc.response.headers["retry-after"]) >= 1
            assert exc.response.headers["x-ratelimit-limit-tokens"] == "120"
            statuses.append(-1)
            break
    assert statuses[-1] == -1 and len(statuses) >= 2, statuses  # each request uses ~40 tokens


def reservation() -> float:
    request = GenerationRequest(model=MODEL_ID, messages=(Message("user", "hi"),),
                                sampling=SamplingParams(max_tokens=2))
    return max_cost(request, CTX, PRICE)


def test_over_budget_is_insufficient_quota(srv: ServerProcess, new_key) -> None:  # type: ignore[no-untyped-def]
    _, client = new_key("--budget", "0", "--period", "day")
    with pytest.raises(openai.RateLimitError) as info:
        client.chat.completions.create(model=MODEL_ID, messages=HI, max_tokens=2)
    assert info.value.code == "insufficient_quota" and info.value.type == "insufficient_quota"
    assert int(info.value.response.headers["retry-after"]) >= 1
    with pytest.raises(openai.RateLimitError) as info:
        with client.responses.stream(model=MODEL_ID, input="hi", max_output_tokens=16) as stream:
            for _ in stream:
                pass
    assert info.value.code == "insufficient_quota"


def test_fifty_parallel_requests_never_overshoot(srv: ServerProcess, new_key) -> None:  # type: ignore[no-untyped-def]
    # Each request reserves ~$0.28 (its whole context at most) and costs ~$0.04: a budget a few reservations
    # wide admits some of the burst, and only requests whose reservation still fits.
    key, client = new_key("--budget", "1", "--period", "month")
    client.chat.completions.create(model=MODEL_ID, messages=HI, max_tokens=2)  # spend some of it first
    spent_before = key_usage(srv, key["id"])["cost_usd"]
    assert 0 < spent_before < 1

    async def burst() -> list[str]:
        async with openai.AsyncOpenAI(base_url=srv.base_url, api_key=key["key"], max_retries=0,
                                      timeout=120) as aclient:
            async def one() -> str:
                try:
                    await aclient.chat.completions.create(model=MODEL_ID, messages=HI, max_tokens=2)
                    return "ok"
                except openai.RateLimitError as exc:
                    return str(exc.code)

            return await asyncio.gather(*(one() for _ in range(50)))

    outcomes = asyncio.run(burst())
    assert set(outcomes) <= {"ok", "insufficient_quota"}, outcomes
    assert "insufficient_quota" in outcomes and "ok" in outcomes
    spent = key_usage(srv, key["id"])["cost_usd"]
    assert spent <= 1, (spent, reservation())  # a request is admitted only if its reservation fits whole
    with pytest.raises(openai.RateLimitError):  # over (or within one request of) the budget now
        while True:
            client.chat.completions.create(model=MODEL_ID, messages=HI, max_tokens=2)


def test_a_key_past_its_concurrency_cap_gets_429_and_others_are_served(server_factory: ServerFactory) -> None:
    """--max-concurrency-per-key 1: a second generation of the same key while one streams is refused."""
    srv = server_factory("--parallel", "2", "--max-concurrency-per-key", "1", "--ctx-per-slot", str(CTX),
                         env={"SHOAL_ADMIN_TOKEN": ADMIN_TOKEN})
    a, b = (admin_create_key(srv, name=name)["key"] for name in ("a", "b"))
    with srv.client(api_key=a, max_retries=0) as first, srv.client(api_key=b, max_retries=0) as other:
        # Greedy, and a prompt this model answers at length: still running when the second request comes.
        stream = first.chat.completions.create(model=MODEL_ID, messages=[
            {"role": "user", "content": "Write the numbers from 1 to 500 separated by commas: 1, 2, 3,"}],
            max_tokens=400, temperature=0, stream=True)
        try:
            next(iter(stream))  # the generation is under way
            with pytest.raises(openai.RateLimitError) as info:
                first.chat.completions.create(model=MODEL_ID, messages=HI, max_tokens=1)
            err = info.value
            assert err.status_code == 429 and err.code == "concurrency_limit_exceeded"
            assert err.type == "rate_limit_error" and err.response.headers["retry-after"] == "1"
            assert set(err.response.json()["error"]) == {"message", "type", "param", "code"}
            assert other.chat.completions.create(model=MODEL_ID, messages=HI, max_tokens=1).choices  # key b: fine
        finally:
            stream.close()
        deadline = time.monotonic() + 10
        while True:  # the closed stream gives its place back
            try:
                assert first.chat.completions.create(model=MODEL_ID, messages=HI, max_tokens=1).choices
                break
            except openai.RateLimitError:
                assert time.monotonic() < deadline
                time.sleep(0.1)


def test_old_schema_is_refused_until_db_upgrade(server_factory: ServerFactory) -> None:
    from tests.storage.test_migrations import at_revision

    srv = server_factory(start=False)
    home = Path(srv.environment()["SHOAL_HOME"])
    home.mkdir(parents=True)
    asyncio.run(at_revision(f"sqlite:///{home / 'shoal.db'}", "0001"))
    proc = subprocess.run(srv.command(), env=srv.environment(), capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0
    assert "revision 0001" in proc.stderr and "shoal db upgrade" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert "revision 0004" in cli(srv, "db", "upgrade").stdout
    srv.start()
    assert srv.running


def test_no_key_or_hash_in_the_server_log(srv: ServerProcess, secrets_seen: list[str]) -> None:
    """Last in the module: everything above ran on this server, at debug log level."""
    log = srv.log_text()
    assert "key_" in log  # it does log key ids...
    assert_no_secrets(log, secrets_seen)  # ...and never a key or a hash of one
