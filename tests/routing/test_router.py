"""Routing decisions: capabilities, context, policies, load, breakers, access (scripted backends)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from shoal.core.backend import ModelCard
from shoal.core.admission import Admission
from shoal.core.context import RequestContext
from shoal.core.deployment import Deployment
from shoal.core.types import (
    HIGH_DETAIL_IMAGE_TOKENS,
    GenerationRequest,
    ImageInput,
    Message,
    ResponseFormat,
    SamplingParams,
    ToolSpec,
)
from shoal.errors import InvalidRequestError, ModelNotFoundError, OverloadedError
from shoal.routing.router import Router, RouterSpec
from tests.scripted import ScriptedBackend


def card(model_id: str, caps: tuple[str, ...] = (), ctx: int = 4096, price: float = 0.0) -> ModelCard:
    return ModelCard(id=model_id, owned_by="t", created=0, context_length=ctx, capabilities=caps,
                     aliases=(f"{model_id}-alias",), extra={"pricing": {"input": price, "output": price}})


def dep(c: ModelCard, name: str, slots: int = 2) -> Deployment:
    return Deployment(c, ScriptedBackend(cards=[c], name=name), Admission(slots, 4), name=name)


def req(model: str, *, tools: bool = False, schema: bool = False, prompt: str = "hi",
        max_tokens: int | None = None) -> GenerationRequest:
    return GenerationRequest(model=model, messages=(Message("user", prompt),),
                             tools=(ToolSpec("f"),) if tools else (),
                             response_format=ResponseFormat("json_schema", schema={}) if schema else None,
                             sampling=SamplingParams(max_tokens=max_tokens))


CTX = RequestContext()


def names(router: Router, request: GenerationRequest) -> list[str]:
    return [d.name for d in router.plan(request, CTX).candidates]


@pytest.fixture
def router() -> Router:
    cheap = card("cheap", (), ctx=1024, price=0.1)
    tooly = card("tooly", ("tools",), price=5)
    smart = card("smart", ("tools", "json_schema"), ctx=32000, price=10)
    deps = [dep(cheap, "cheap-1"), dep(tooly, "tooly-1"), dep(smart, "smart-1")]
    return Router(deps, [RouterSpec("auto", ("smart", "tooly", "cheap"), policy="cheapest"),
                         RouterSpec("best", ("smart", "tooly", "cheap"), policy="quality")])


def test_a_request_with_tools_never_goes_to_a_deployment_without_tools(router: Router) -> None:
    assert names(router, req("auto", tools=True)) == ["tooly-1", "smart-1"]
    assert names(router, req("best", tools=True)) == ["smart-1", "tooly-1"]


def test_cheapest_and_quality_orders(router: Router) -> None:
    assert names(router, req("auto")) == ["cheap-1", "tooly-1", "smart-1"]
    assert names(router, req("best")) == ["smart-1", "tooly-1", "cheap-1"]


def test_json_schema_and_context_length_filter(router: Router) -> None:
    assert names(router, req("auto", schema=True)) == ["smart-1"]
    long = "word " * 4000  # ~5000 tokens: only the 32k model fits
    assert names(router, req("auto", prompt=long)) == ["smart-1"]
    assert names(router, req("auto", max_tokens=2000)) == ["tooly-1", "smart-1"]


def test_no_capable_deployment_is_a_400(router: Router) -> None:
    with pytest.raises(InvalidRequestError, match="tools"):
        Router(router.groups["cheap"], [RouterSpec("r", ("cheap",))]).plan(req("r", tools=True), CTX)


def test_fastest_prefers_the_lowest_measured_ttft() -> None:
    a, b = dep(card("a"), "a-1"), dep(card("b"), "b-1")
    a.ttft_ewma, b.ttft_ewma = 300.0, 40.0
    assert names(Router([a, b], [RouterSpec("fast", ("a", "b"), policy="fastest")]), req("fast")) == ["b-1", "a-1"]


def test_deployments_of_one_model_by_fewest_outstanding() -> None:
    c = card("m")
    one, two = dep(c, "one"), dep(c, "two")
    router = Router([one, two])
    assert names(router, req("m")) == ["one", "two"]
    one.admission.running = 2
    assert names(router, req("m-alias")) == ["two", "one"]
    assert router.resolve("m").name == "two"


def test_open_breakers_are_skipped_and_all_open_is_503() -> None:
    c = card("m")
    one, two = dep(c, "one"), dep(c, "two")
    router = Router([one, two])
    one.breaker.failure(retry_after=30)
    assert names(router, req("m")) == ["two"]
    two.breaker.failure(retry_after=5)
    with pytest.raises(OverloadedError) as info:
        router.plan(req("m"), CTX)
    assert info.value.headers["retry-after"] == "5"


def test_access_scopes_routers_and_models(router: Router) -> None:
    scoped = RequestContext(allowed_models=frozenset({"cheap", "tooly"}))
    assert [d.name for d in router.plan(req("auto"), scoped).candidates] == ["cheap-1", "tooly-1"]
    with pytest.raises(ModelNotFoundError):
        router.plan(req("smart"), scoped)
    assert [c.id for c in router.cards(scoped)] == ["cheap", "tooly", "auto", "best"]
    assert router.cards()[-1].extra["router"] == {"policy": "quality", "models": ["smart", "tooly", "cheap"]}


def test_router_names_must_be_free_and_models_known(router: Router) -> None:
    deps = [d for ds in router.groups.values() for d in ds]
    with pytest.raises(ValueError, match="unknown"):
        Router(deps, [RouterSpec("r", ("nope",))])
    with pytest.raises(ValueError, match="taken"):
        Router(deps, [RouterSpec("cheap", ("smart",))])


def image_req(model: str, detail: str = "auto", images: int = 1) -> GenerationRequest:
    parts = ("What is this?", *(ImageInput("https://example.com/cat.png", detail) for _ in range(images)))  # type: ignore[arg-type]
    return GenerationRequest(model=model, messages=(Message.of_parts("user", parts),))


@pytest.fixture
def eyes() -> Router:
    cheap = card("cheap", ("tools",), price=0.1)
    seeing = card("seeing", ("tools", "vision"), price=5)
    mixed = card("mixed", ("vision",))
    # One model with a deployment that cannot see (a local llama.cpp without a vision projector, say).
    blind = replace(mixed, capabilities=())
    deps = [dep(cheap, "cheap-1"), dep(seeing, "seeing-1"), dep(blind, "mixed-blind"), dep(mixed, "mixed-eyes")]
    return Router(deps, [RouterSpec("auto", ("cheap", "seeing"), policy="cheapest")])


def test_an_image_needs_vision() -> None:
    assert image_req("m").needs() == ("vision",)
    assert req("m").needs() == ()


def test_a_router_sends_images_only_to_a_vision_model(eyes: Router) -> None:
    assert names(eyes, req("auto")) == ["cheap-1", "seeing-1"]  # cheapest first without images
    assert names(eyes, image_req("auto")) == ["seeing-1"]


def test_an_image_never_goes_to_a_deployment_without_vision(eyes: Router) -> None:
    for _ in range(3):  # whatever the load, the blind deployment of the model is never a candidate
        assert names(eyes, image_req("mixed")) == ["mixed-eyes"]
        eyes.groups["mixed"][1].admission.running += 5
    assert names(eyes, req("mixed")) == ["mixed-blind", "mixed-eyes"]


def test_a_model_named_directly_without_vision_is_a_400(eyes: Router) -> None:
    with pytest.raises(InvalidRequestError) as info:
        eyes.plan(image_req("cheap"), CTX)
    assert info.value.code == "model_not_capable" and info.value.param == "model"
    assert "vision" in info.value.message
    # Tools are softer: a model named directly still gets a request it may not handle well.
    assert names(eyes, req("cheap", schema=True)) == ["cheap-1"]


def test_images_count_a_fixed_number_of_prompt_tokens() -> None:
    text_only = image_req("m", images=0).typical_input_tokens()
    assert image_req("m", "low").typical_input_tokens() == text_only + 85
    assert image_req("m", "high", images=2).typical_input_tokens() == text_only + 2 * HIGH_DETAIL_IMAGE_TOKENS
    assert image_req("m").typical_input_tokens() == text_only + HIGH_DETAIL_IMAGE_TOKENS  # auto counts as high
    # A long data URL is not text: it costs what any image costs.
    big = GenerationRequest(model="m", messages=(Message.of_parts("user", (
        "What is this?", ImageInput("data:image/png;base64," + "A" * 400_000, "low"))),))
    assert big.typical_input_tokens() == text_only + 85


def test_images_count_against_the_context_length() -> None:
    small = card("small", ("vision",), ctx=1000)
    router = Router([dep(small, "small-1")], [RouterSpec("r", ("small",))])
    assert names(router, image_req("r", "low", images=2)) == ["small-1"]
    with pytest.raises(InvalidRequestError, match="context"):
        router.plan(image_req("r", "high", images=2), CTX)


# -- replicas joining and leaving, health ------------------------------------------------------------


def test_replicas_join_and_leave_a_group(router: Router) -> None:
    c = router.groups["smart"][0].card
    extra = dep(c, "smart-2")
    router.add(extra)
    router.add(extra)  # once only
    assert sorted(names(router, req("smart"))) == ["smart-1", "smart-2"]
    assert [d.name for d in router.deployments].count("smart-2") == 1
    assert router.remove(router.groups["smart"][0])
    assert names(router, req("smart")) == ["smart-2"]
    assert not router.remove(dep(c, "never-added"))


def test_a_model_without_replicas_answers_503_not_404(router: Router) -> None:
    only = router.groups["smart"][0]
    router.remove(only)
    with pytest.raises(OverloadedError) as info:
        router.plan(req("smart"), CTX)
    assert info.value.code == "no_replicas"
    assert "smart" not in [c.id for c in router.cards()]
    assert names(router, req("best", tools=True)) == ["tooly-1"]  # the router skips it, listing still works
    assert "best" in [c.id for c in router.cards()]
    router.add(only)
    assert names(router, req("smart")) == ["smart-1"]


def test_expected_models_may_start_empty() -> None:
    c = card("later")
    r = Router([], [RouterSpec("auto", ("later",))], expected=[c])
    with pytest.raises(OverloadedError):
        r.plan(req("later-alias"), CTX)
    r.add(dep(c, "later/10.0.0.1:80"))
    assert names(r, req("auto")) == ["later/10.0.0.1:80"]


def test_a_replica_marked_down_is_skipped(router: Router) -> None:
    c = router.groups["smart"][0].card
    router.add(dep(c, "smart-2"))
    router.groups["smart"][0].up = False
    assert names(router, req("smart")) == ["smart-2"]
    for d in router.groups["smart"]:
        d.up = False
    with pytest.raises(OverloadedError):
        router.plan(req("smart"), CTX)
