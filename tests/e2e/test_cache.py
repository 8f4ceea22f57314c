"""Prompt caching: a repeated long prefix is reported as cached tokens."""

from __future__ import annotations

import random

import openai
import pytest

from .conftest import MODEL_ID

pytestmark = pytest.mark.e2e

COLOURS = ["red", "blue", "green", "amber", "violet", "silver", "copper", "ivory", "teal", "crimson"]
THINGS = ["lantern", "kettle", "compass", "ledger", "anchor", "violin", "clock", "mirror", "saddle", "telescope"]
PLACES = ["north tower", "cellar", "harbour office", "library", "orchard shed", "bell loft", "kitchen garden",
          "chapel", "stable yard", "east wing"]


def long_text(seed: int, sentences: int = 48) -> str:
    """About 600 tokens of varied, deterministic text (different for each ``seed``)."""
    rng = random.Random(seed)
    lines = [f"You are the archivist of house {seed}. Here is the inventory."]
    for i in range(sentences):
        lines.append(f"Item {i + 1}: the {rng.choice(COLOURS)} {rng.choice(THINGS)} is kept in the "
                     f"{rng.choice(PLACES)} and was last checked {rng.randint(2, 90)} days ago.")
    return " ".join(lines)


def test_chat_repeated_prefix_is_cached(client: openai.OpenAI) -> None:
    system = long_text(seed=1001)

    def ask(question: str):
        return client.chat.completions.create(
            model=MODEL_ID, max_tokens=4, temperature=0,
            messages=[{"role": "system", "content": system}, {"role": "user", "content": question}])

    first = ask("Where is item 3 kept?")
    assert first.usage.prompt_tokens >= 500
    first_cached = first.usage.prompt_tokens_details.cached_tokens
    assert first_cached < 100  # a new prefix: at most the chat template's opening was cached
    second = ask("When was item 7 last checked?")
    cached = second.usage.prompt_tokens_details.cached_tokens
    assert cached > 0
    # The whole shared system message (all but the differing question) comes from the cache.
    assert first.usage.prompt_tokens - 30 <= cached < second.usage.prompt_tokens


def test_responses_repeated_prefix_is_cached(client: openai.OpenAI) -> None:
    instructions = long_text(seed=2002)

    def ask(question: str):
        return client.responses.create(model=MODEL_ID, instructions=instructions, input=question,
                                       max_output_tokens=4, temperature=0)

    first = ask("Where is item 5 kept?")
    assert first.usage.input_tokens >= 500
    assert first.usage.input_tokens_details.cached_tokens < 100
    second = ask("When was item 9 last checked?")
    cached = second.usage.input_tokens_details.cached_tokens
    assert cached > 0
    assert first.usage.input_tokens - 30 <= cached < second.usage.input_tokens
