"""Pre-generation estimates: typical prompt size, a prompt upper bound, the maximum cost."""

from __future__ import annotations

import pytest

from shoal.core.types import (
    HIGH_DETAIL_IMAGE_TOKENS,
    LOW_DETAIL_IMAGE_TOKENS,
    GenerationRequest,
    ImageInput,
    Message,
    SamplingParams,
    ToolCall,
    ToolSpec,
)
from shoal.core.types import (
    IMAGE_UPPER_TOKENS,
    TEMPLATE_ALLOWANCE_TOKENS,
    max_output_tokens,
    typical_input_tokens,
    upper_input_tokens,
)
from shoal.usage.estimate import max_cost
from shoal.usage.pricing import Pricing


def req(text: str = "hello world", max_tokens: int | None = None, **kw: object) -> GenerationRequest:
    return GenerationRequest(model="m", messages=(Message("user", text),),
                             sampling=SamplingParams(max_tokens=max_tokens), **kw)  # type: ignore[arg-type]


def test_typical_and_upper() -> None:
    r = req("x" * 400)
    assert typical_input_tokens(r) == 100 + 4 + 8
    assert upper_input_tokens(r, 10_000) == 400 + 16 + TEMPLATE_ALLOWANCE_TOKENS
    assert upper_input_tokens(r, 300) == 300  # never more than the context
    assert upper_input_tokens(req("é" * 10), 10_000) == 20 + 16 + TEMPLATE_ALLOWANCE_TOKENS  # bytes, not chars


def test_tools_and_tool_calls_count() -> None:
    plain = req()
    with_tools = req(tools=(ToolSpec("get_weather", "Weather", {"type": "object"}),))
    assert typical_input_tokens(with_tools) > typical_input_tokens(plain)
    call = GenerationRequest(model="m", messages=(Message("assistant", "", tool_calls=(
        ToolCall("c1", "get_weather", '{"city": "Paris"}'),)),))
    assert upper_input_tokens(call, 10_000) > 16 + TEMPLATE_ALLOWANCE_TOKENS


def test_max_output_and_cost() -> None:
    assert max_output_tokens(req(max_tokens=5), 4096) == 5
    assert max_output_tokens(req(), 4096) == 4096
    assert max_output_tokens(req(max_tokens=10**6), 4096) == 4096
    p = Pricing(input=1.0, output=2.0)
    r = req("abc", max_tokens=10)
    assert max_cost(r, 4096, p) == pytest.approx((upper_input_tokens(r, 4096) * 1.0 + 10 * 2.0) / 1e6)


def test_images_count_fixed_tokens_not_their_data() -> None:
    def with_image(detail: str) -> GenerationRequest:
        image = ImageInput("data:image/png;base64," + "A" * 100_000, detail)  # type: ignore[arg-type]
        return GenerationRequest(model="m", messages=(Message.of_parts("user", ("hello world", image)),))

    plain = req()
    assert typical_input_tokens(with_image("low")) == typical_input_tokens(plain) + LOW_DETAIL_IMAGE_TOKENS
    assert typical_input_tokens(with_image("auto")) == typical_input_tokens(plain) + HIGH_DETAIL_IMAGE_TOKENS
    assert upper_input_tokens(with_image("low"), 100_000) == upper_input_tokens(plain, 100_000) + IMAGE_UPPER_TOKENS
