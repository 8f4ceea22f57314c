"""Cache-affinity balancing (``balance: prefix``): by conversation, cache key, longest prefix; load wins past
its thresholds; the index stays bounded."""

from __future__ import annotations

from shoal.core.admission import Admission
from shoal.core.backend import ModelCard
from shoal.core.breaker import CircuitBreaker
from shoal.core.context import RequestContext
from shoal.core.deployment import Deployment
from shoal.core.types import GenerationRequest, Message
from shoal.routing.affinity import AffinityIndex, BalanceSpec, block_hashes, prompt_text
from shoal.routing.router import Router
from tests.scripted import ScriptedBackend

CARD = ModelCard(id="m", owned_by="t", created=0, context_length=100_000)
SYSTEM = "You are a careful assistant who answers questions about rivers. " * 20


def dep(name: str) -> Deployment:
    return Deployment(CARD, ScriptedBackend(cards=[CARD], name=name), Admission(8, 8), name=name)


def router(policy: str = "prefix", abs_threshold: int = 2, rel_threshold: float = 1.5) -> Router:
    return Router([dep("a"), dep("b")], balancing={"m": BalanceSpec(policy, abs_threshold, rel_threshold)})  # type: ignore[arg-type]


def busy(router: Router, name: str, running: int) -> None:
    next(d for d in router.deployments if d.name == name).admission.running = running


def req(*turns: str, key: str | None = None, system: str = SYSTEM) -> GenerationRequest:
    messages = [Message("system", system)]
    for i, text in enumerate(turns):
        messages.append(Message("user" if i % 2 == 0 else "assistant", text))
    return GenerationRequest(model="m", messages=tuple(messages), prompt_cache_key=key)


def first(router: Router, request: GenerationRequest, context: RequestContext | None = None) -> str:
    return router.plan(request, context or RequestContext()).candidates[0].name


def test_least_outstanding_ignores_history() -> None:
    r = router("least_outstanding")
    assert first(r, req("hi", key="k")) == "a"
    busy(r, "a", 1)
    assert first(r, req("hi", key="k")) == "b"
    assert r.balancer.indexes == {}


def test_same_cache_key_goes_to_the_same_replica_while_it_is_busier() -> None:
    r = router()
    assert first(r, req("one", key="user-42", system="")) == "a"
    busy(r, "a", 2)
    assert first(r, req("something unrelated", key="user-42", system="")) == "a"
    assert first(r, req("something unrelated", key="user-7", system="")) == "b"  # no affinity: least loaded
    busy(r, "b", 3)
    assert first(r, req("more", key="user-7", system="")) == "b"


def test_cache_keys_are_per_owner() -> None:
    r = router()
    assert first(r, req("x", key="k", system=""), RequestContext(owner="alice")) == "a"
    busy(r, "a", 1)
    assert first(r, req("y", key="k", system=""), RequestContext(owner="bob")) == "b"
    assert first(r, req("y", key="k", system=""), RequestContext(owner="alice")) == "a"


def test_follow_up_of_a_response_goes_where_it_was_served() -> None:
    r = router()
    busy(r, "a", 1)
    assert first(r, req("short", system=""), RequestContext(response_id="resp_1")) == "b"
    busy(r, "b", 3)
    # A different prompt (the conversation was truncated, say): the conversation still decides.
    follow = RequestContext(previous_response_id="resp_1", response_id="resp_2")
    assert first(r, req("new", system=""), follow) == "b"
    assert first(r, req("newer", system=""), RequestContext(previous_response_id="resp_2")) == "b"
    assert first(r, req("new", system=""), RequestContext(previous_response_id="resp_unknown")) == "a"


def test_longest_matching_prefix_wins() -> None:
    r = router()
    one = ("Tell me about the Nile. " * 20, "The Nile is long. " * 20)
    two = ("Tell me about the Amazon. " * 20, "The Amazon is wide. " * 20)
    assert first(r, req(*one)) == "a"
    busy(r, "a", 3)
    assert first(r, req(*two)) == "b"  # a holds the system prompt but is too busy
    busy(r, "a", 1)
    busy(r, "b", 2)
    # Each conversation's next turn extends its own prefix: back to its replica, whatever the load order.
    assert first(r, req(*one, "And its delta? " * 10)) == "a"
    busy(r, "a", 3)
    assert first(r, req(*two, "And its mouth? " * 10)) == "b"


def test_a_shared_system_prompt_draws_to_its_replica_then_ties_go_by_load() -> None:
    r = router()
    assert first(r, req("first question " * 20)) == "a"
    busy(r, "a", 1)
    assert first(r, req("second question " * 20)) == "a"  # only a holds the system prompt
    busy(r, "a", 3)
    assert first(r, req("third question " * 20)) == "b"  # past the threshold: b gets (and now holds) it
    busy(r, "b", 2)
    assert first(r, req("fourth question " * 20)) == "b"  # both hold it: the least loaded
    busy(r, "b", 4)
    assert first(r, req("fifth question " * 20)) == "a"


def test_affinity_yields_when_the_replica_is_overloaded() -> None:
    r = router(abs_threshold=2, rel_threshold=1.5)
    assert first(r, req("q", key="k", system="")) == "a"
    busy(r, "a", 3)
    busy(r, "b", 1)
    assert first(r, req("q", key="k", system="")) == "a"  # 3 - 1 = 2: not beyond the absolute threshold
    busy(r, "a", 4)
    assert first(r, req("q", key="k", system="")) == "b"  # 4 - 1 > 2 and 4 > 1.5 * 1
    assert first(r, req("q", key="k", system="")) == "b"  # and the key now lives on b


def test_affinity_holds_under_the_relative_threshold() -> None:
    r = router(abs_threshold=2, rel_threshold=1.5)
    assert first(r, req("q", key="k", system="")) == "a"
    busy(r, "a", 9)
    busy(r, "b", 6)
    assert first(r, req("q", key="k", system="")) == "a"  # 9 - 6 > 2 but 9 is not above 1.5 * 6
    busy(r, "a", 10)
    assert first(r, req("q", key="k", system="")) == "b"  # both thresholds passed


def test_affinity_yields_when_the_breaker_is_open() -> None:
    r = router()
    assert first(r, req("q", key="k")) == "a"
    a = r.deployments[0]
    a.breaker = CircuitBreaker(threshold=1, cooldown=60)
    a.breaker.failure()
    assert [d.name for d in r.plan(req("q", key="k"), RequestContext()).candidates] == ["b"]


def test_index_is_bounded_and_forgets_least_recently_used() -> None:
    index = AffinityIndex(block_chars=16, max_chars=4_000, max_blocks=50, max_keys=3)
    a, b = dep("a"), dep("b")
    for i in range(20):
        index.record(a, req(f"conversation {i} " * 50, key=f"k{i}"), RequestContext(response_id=f"r{i}"))
    assert len(index.blocks) == 50 and len(index.keys) == 3
    assert index.favoured([a, b], req("other", key="k19", system=""), RequestContext()) is a
    assert index.favoured([a, b], req("other", key="k0", system=""), RequestContext()) is None
    assert index.favoured([a, b], req("other", system=""), RequestContext(previous_response_id="r0")) is None
    oldest = block_hashes(prompt_text(req("conversation 0 " * 50), 4_000), 16)
    newest = block_hashes(prompt_text(req("conversation 19 " * 50), 4_000), 16)
    assert index.matched_blocks("a", oldest) < len(oldest)
    # Deepest blocks go first: the newest prompt keeps its leading 50 (the shared system prompt among them).
    assert len(newest) > 50 and index.matched_blocks("a", newest) == 50


def test_hashing_is_bounded_by_max_chars() -> None:
    text = prompt_text(req("x" * 100_000), max_chars=1_000)
    assert len(text) == 1_000
    assert len(block_hashes(text, 128)) == 7
    assert block_hashes("ab" * 64, 64) != block_hashes("ba" * 64, 64)
    # Chained: the second block's hash depends on the first.
    assert block_hashes("a" * 64 + "b" * 64, 64)[1] != block_hashes("c" * 64 + "b" * 64, 64)[1]
