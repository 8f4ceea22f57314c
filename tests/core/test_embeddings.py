"""The embedding operation's needs and size bounds (what routing and metering ask of it)."""

from __future__ import annotations

from shoal.core.embeddings import EmbeddingRequest


def test_needs_an_embedding_model_and_writes_nothing() -> None:
    request = EmbeddingRequest(model="e", inputs=("hello",))
    assert request.kind == "embed" and request.stream is False
    assert request.needs() == ("embeddings",) and request.hard_needs() == ("embeddings",)
    assert request.prefers() == ()
    assert request.max_output_tokens(8192) == 0 and request.requested_output_tokens() is None


def test_input_estimates() -> None:
    text = EmbeddingRequest(model="e", inputs=("x" * 400, "é" * 10))
    assert text.typical_input_tokens() == 100 + 3
    assert text.upper_input_tokens(512) == 402 + 22  # bytes (+2 each), not capped by one input's window
    tokens = EmbeddingRequest(model="e", inputs=((1, 2, 3), (4,)))
    assert tokens.typical_input_tokens() == 4 == tokens.upper_input_tokens(512)
