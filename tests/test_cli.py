"""The ``shoal serve`` banner: what the server says once it is ready."""

from __future__ import annotations

from shoal.core.backend import ModelCard
from shoal.cli import banner, local_contexts
from shoal.config import Settings


def test_banner_says_the_context_of_each_slot() -> None:
    local = ModelCard(id="qwen", owned_by="shoal", created=0, context_length=16384,
                      extra={"engine": "llama.cpp", "parallel_slots": 4})
    remote = ModelCard(id="gpt", owned_by="openai", created=0, context_length=128000)
    contexts = local_contexts([local, remote])
    assert contexts == {"qwen": (4, 16384)}
    lines = banner(Settings(), ["qwen", "gpt"], contexts)
    assert "context: qwen has 4 parallel slot(s) of 16384 tokens each" in "\n".join(lines)


def test_default_context_per_slot_fits_a_coding_agent_prompt() -> None:
    assert Settings().ctx_per_slot >= 16384
