"""Ids and logprobs shared by both front-ends."""

from __future__ import annotations

import re

from shoal.api.encoding import logprob_dicts, new_id
from shoal.core.types import TokenLogprob


def test_ids_have_the_prefix_and_96_random_bits() -> None:
    ids = {new_id("chatcmpl-") for _ in range(1000)}
    assert len(ids) == 1000
    assert all(re.fullmatch(r"chatcmpl-[0-9a-f]{24}", i) for i in ids)
    # Leading zeros are kept: every id has the same length.
    assert {len(new_id("resp_")) for _ in range(200)} == {len("resp_") + 24}


def test_logprob_dicts_shape() -> None:
    lp = TokenLogprob("hi", -0.5, (104, 105), (("hi", -0.5, (104, 105)), ("ho", -1.5, (104, 111))))
    assert logprob_dicts([lp]) == [{"token": "hi", "logprob": -0.5, "bytes": [104, 105], "top_logprobs": [
        {"token": "hi", "logprob": -0.5, "bytes": [104, 105]}, {"token": "ho", "logprob": -1.5, "bytes": [104, 111]}]}]
