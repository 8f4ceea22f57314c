"""Two ``shoal serve`` replicas sharing PostgreSQL and Redis: limits, budgets and revocation hold across both.

Each run uses a fresh PostgreSQL database and a unique Redis key prefix, both
removed afterwards. Outside CI the module is skipped if the services are not
running; in CI (``CI=true``) it fails instead.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Iterator
from typing import Any

import openai
import pytest

from shoal.core.types import GenerationRequest, Message, SamplingParams
from shoal.usage.estimate import max_cost
from shoal.usage.pricing import Pricing
from tests.services import REDIS_URL, fresh_postgres, redis_prefix
from tests.tenancy import (
    ADMIN_TOKEN,
    PRICES_YAML,
    admin,
    admin_create_key,
    assert_no_secrets,
    fresh_minute,
    key_usage,
)

from .conftest import MODEL_ID, ServerFactory, ServerProcess

pytestmark = pytest.mark.e2e

CTX = 1024
HI = [{"role": "user", "content": "hi"}]


@pytest.fixture(scope="module")
def shared() -> Iterator[dict[str, str]]:
    """The environment both replicas share: a fresh database, Redis with a unique prefix, the admin token."""
    with fresh_postgres() as pg_url, redis_prefix() as prefix:
        yield {"SHOAL_DATABASE_URL": pg_url, "SHOAL_REDIS_URL": REDIS_URL, "SHOAL_REDIS_PREFIX": prefix,
               "SHOAL_ADMIN_TOKEN": ADMIN_TOKEN}


@pytest.fixture(scope="module")
def replicas(module_server_factory: ServerFactory, shared: dict[str, str],
             tmp_path_factory: pytest.TempPathFactory) -> list[ServerProcess]:
    config = tmp_path_factory.mktemp("cfg") / "shoal.yaml"
    config.write_text(PRICES_YAML)
    args = ("--parallel", "2", "--ctx-per-slot", str(CTX), "--config", str(config), "--log-level", "debug")
    # One after the other: the first creates the schema.
    return [module_server_factory(*args, env=shared), module_server_factory(*args, env=shared)]


@pytest.fixture(scope="module")
def secrets_seen() -> list[str]:
    return [ADMIN_TOKEN]


def clients(replicas: list[ServerProcess], secret: str) -> list[openai.OpenAI]:
    return [r.client(api_key=secret) for r in replicas]


def test_both_replicas_use_redis(replicas: list[ServerProcess]) -> None:
    for r in replicas:
        assert r.wait_for_log("limits and budgets: redis")


def test_a_key_made_on_one_replica_works_on_the_other(replicas: list[ServerProcess],
                                                       secrets_seen: list[str]) -> None:
    key = admin_create_key(replicas[0], name="everywhere", models=[MODEL_ID])
    secrets_seen.append(key["key"])
    b = replicas[1].client(api_key=key["key"])
    assert [m.id for m in b.models.list().data] == [MODEL_ID]
    assert b.chat.completions.create(model=MODEL_ID, messages=HI, max_tokens=1).choices


def test_rate_limit_holds_across_replicas(replicas: list[ServerProcess], secrets_seen: list[str]) -> None:
    key = admin_create_key(replicas[0], name="rpm", rpm=4)
    secrets_seen.append(key["key"])
    a, b = clients(replicas, key["key"])
    fresh_minute()
    remaining = [int(c.models.with_raw_response.list().headers["x-ratelimit-remaining-requests"])
                 for c in (a, b, a, b)]
    assert remaining == [3, 2, 1, 0]
    for c in (a, b):
        with pytest.raises(openai.RateLimitError) as info:
            c.chat.completions.create(model=MODEL_ID, messages=HI, max_tokens=1)
        assert info.value.code == "rate_limit_exceeded" and int(info.value.response.headers["retry-after"]) >= 1


def test_token_limit_holds_across_replicas(replicas: list[ServerProcess], secrets_seen: list[str]) -> None:
    key = admin_create_key(replicas[0], name="tpm", tpm=100)
    secrets_seen.append(key["key"])
    fresh_minute()
    outcomes = []
    for c in itertools.islice(itertools.cycle(clients(replicas, key["key"])), 6):
        try:
            c.chat.completions.create(model=MODEL_ID, messages=HI, max_tokens=8)
            outcomes.append("ok")
        except openai.RateLimitError:
            outcomes.append("429")
            break
    assert outcomes[-1] == "429" and 1 <= outcomes.count("ok") <= 3, outcomes


def test_budget_holds_across_replicas_under_fifty_parallel_requests(replicas: list[ServerProcess],
                                                                     secrets_seen: list[str]) -> None:
    budget = 1.0  # a few reservations (~$0.28 each, ~$0.04 spent each) wide: some of the burst fits
    key = admin_create_key(replicas[0], name="budget", budget_usd=budget, budget_period="day")
    secrets_seen.append(key["key"])
    replicas[1].client(api_key=key["key"]).chat.completions.create(model=MODEL_ID, messages=HI, max_tokens=2)
    assert 0 < key_usage(replicas[0], key["id"], at_least=1)["cost_usd"] < budget

    async def burst() -> list[str]:
        aclients = [openai.AsyncOpenAI(base_url=r.base_url, api_key=key["key"], max_retries=0, timeout=120)
                    for r in replicas]

        async def one(i: int) -> str:
            try:
                await aclients[i % 2].chat.completions.create(model=MODEL_ID, messages=HI, max_tokens=2)
                return "ok"
            except openai.RateLimitError as exc:
                return str(exc.code)

        try:
            return await asyncio.gather(*(one(i) for i in range(50)))
        finally:
            for c in aclients:
                await c.close()

    outcomes = asyncio.run(burst())
    assert set(outcomes) <= {"ok", "insufficient_quota"} and "insufficient_quota" in outcomes, outcomes
    reservation = max_cost(GenerationRequest(model=MODEL_ID, messages=(Message("user", "hi"),),
                                             sampling=SamplingParams(max_tokens=2)),
                           CTX, Pricing(input=1000, cached_input=100, output=4000))
    spent = key_usage(replicas[1], key["id"], at_least=1 + outcomes.count("ok"))["cost_usd"]
    assert spent <= budget, (spent, budget, reservation, outcomes.count("ok"))  # each reservation fit whole


def test_revocation_reaches_the_other_replica_within_seconds(replicas: list[ServerProcess],
                                                             secrets_seen: list[str]) -> None:
    key = admin_create_key(replicas[0], name="revoke-me")
    secrets_seen.append(key["key"])
    a, b = clients(replicas, key["key"])
    a.models.list()
    b.models.list()  # cached on both
    with admin(replicas[0]) as http:
        assert http.post(f"/keys/{key['id']}/revoke").status_code == 200
    with pytest.raises(openai.AuthenticationError):
        a.models.list()  # at once where it was revoked
    revoked_at = time.monotonic()
    while True:
        try:
            b.models.list()
        except openai.AuthenticationError:
            break
        assert time.monotonic() - revoked_at < 4.0, "the other replica still accepts the revoked key"
        time.sleep(0.1)


def test_usage_is_shared(replicas: list[ServerProcess]) -> None:
    with admin(replicas[0]) as a, admin(replicas[1]) as b:
        assert a.get("/usage", params={"by": "key"}).json() == b.get("/usage", params={"by": "key"}).json()


def test_no_key_or_hash_in_either_log(replicas: list[ServerProcess], secrets_seen: list[str],
                                      shared: dict[str, Any]) -> None:
    for r in replicas:
        assert_no_secrets(r.log_text(), secrets_seen)
