"""Small encoders shared by the chat and responses front-ends."""

from __future__ import annotations

import secrets
from typing import Any

from shoal.core.types import TokenLogprob


def new_id(prefix: str) -> str:
    """An OpenAI-style random id such as ``chatcmpl-…`` or ``resp_…``."""
    return prefix + secrets.token_hex(12)


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
