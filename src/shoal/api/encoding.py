"""Small encoders shared by the chat and responses front-ends."""

from __future__ import annotations

from random import getrandbits
from typing import Any

from shoal.core.types import TokenLogprob


def new_id(prefix: str) -> str:
    """An OpenAI-style random id such as ``chatcmpl-…`` or ``resp_…`` (96 random bits).

    Ids name objects; they are not secrets (a stored object is only served to its
    owner), so the fast generator does, rather than a system call per id. Keys use
    :mod:`secrets`.
    """
    return f"{prefix}{getrandbits(96):024x}"


def logprob_dicts(logprobs: list[TokenLogprob] | tuple[TokenLogprob, ...]) -> list[dict[str, Any]]:
    """Token logprobs in the shape both APIs use."""
    return [
        {
            "token": lp.token,
            "logprob": lp.logprob,
            "bytes": list(lp.bytes),
            "top_logprobs": [{"token": t, "logprob": p, "bytes": list(b)} for t, p, b in lp.top],
        }
        for lp in logprobs
    ]
