"""Speculative decoding for the local engine: llama.cpp's settings, and when to use it.

Two ways to draft, both llama.cpp's own (the server verifies the drafts in one batch,
so at temperature 0 the output is the target model's, drafted or not):

* ``draft``: a small model sharing the target's tokenizer proposes the next tokens
  (``qwen2.5-coder-0.5b-instruct`` for ``qwen2.5-coder-1.5b-instruct``);
* ``ngram``: prompt lookup, no second model: when the last few tokens occurred
  earlier in the context, what followed them there is proposed (code edits, quoted text).

The pinned xllamacpp compiles out llama.cpp's per-request speculative overrides
(``speculative.n_max`` and friends in the request body are ignored), so speculation
cannot be switched off for one request of a speculating server. The engine therefore
keeps two servers of the model, a plain one and a speculating one in a process of its own
(:mod:`shoal.backends.local.twin`), and :class:`SpeculationGate` picks the server per
request: speculating only while few streams run and the drafts have been accepted often
enough lately.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

SpeculationKind = Literal["draft", "ngram"]

NGRAM_DRAFT_MAX = 64
"""n-gram lookup's default ``draft_max`` (the catalog's most): verifying a draft costs about as
much per token whatever its length, so longer drafts mean fewer steps. On a code edit, 64 decoded
20-30% faster than 32 in each of two interleaved pairs (35 vs 28, 46 vs 37 tokens/s). A wrong
draft costs more (a batch of 64, about 35 decoded tokens' time), which the 16-token key keeps rare."""


@dataclass(frozen=True)
class SpeculativeConfig:
    """How one local deployment speculates."""

    kind: SpeculationKind
    draft_path: Path | None = None
    """The draft model's GGUF (``kind="draft"``)."""
    draft_max: int = 8
    """Most tokens drafted per step (draft model: ``n_max``; n-gram: the proposed continuation's length)."""
    draft_min: int = 0
    """Fewest tokens a draft model's draft must have to be verified (``n_min``)."""
    p_min: float = 0.0
    """A draft model stops drafting below this probability of its own next token."""
    ngram_size: int = 16
    """Tokens an n-gram key has: how long a repeat must be before what followed it is proposed.
    A wrong draft costs a batch of ``draft_max`` tokens (about as long as 30 decoded tokens for
    48 on 2 cores); with llama.cpp's default of 12, free-form answers drafted wrongly now and
    then (2 of 3 prompts, up to 25% slower), with 16 none did (docs/benchmarks/speculative/)."""
    min_acceptance: float = 0.3
    """Below this recent acceptance rate (accepted / drafted), requests go to the plain server."""
    probe_every: int = 8
    """While off for low acceptance, every this-many-th request speculates again to re-measure."""
    max_streams: int = 1
    """The speculating server's slots: speculate only while fewer requests run on the engine. Requests
    beyond go to the plain server, and both servers computing at once share the cores: on 2 cores,
    4 streams split 1 + 3 decoded at 12 tokens/s against 30 on the plain server alone. The catalog
    therefore defaults this to all of the deployment's slots."""


def apply_speculative(params: Any, config: SpeculativeConfig, threads: int) -> None:
    """Set ``config`` on an ``xllamacpp.CommonParams`` (its ``speculative`` part)."""
    import xllamacpp

    kinds = xllamacpp.common_speculative_type
    spec = params.speculative
    if config.kind == "draft":
        if config.draft_path is None:
            raise ValueError("draft speculation needs a draft model")
        draft = spec.draft
        draft.mparams.path = str(config.draft_path)
        draft.n_max = config.draft_max
        draft.n_min = min(config.draft_min, config.draft_max)
        draft.p_min = config.p_min
        draft.cpuparams.n_threads = threads
        draft.cpuparams_batch.n_threads = threads
        # Like the target's decode threads: sleep between graphs rather than spin (2-core machines).
        draft.cpuparams.poll = 0
        spec.types = [kinds.COMMON_SPECULATIVE_TYPE_DRAFT_SIMPLE]
    else:
        # llama.cpp's plain n-gram search, not its n-gram map: the map keeps state in the slot from
        # one request to the next (keys as positions in earlier prompts, and each key's draft length
        # capped by its last acceptance, which never grows back). Measured on a code edit: 176 of
        # 192 tokens drafted in a fresh slot, 34 after the slot had answered another question;
        # the search drafted 176 either way (docs/benchmarks/speculative/).
        ngram = spec.ngram_simple
        ngram.size_n = config.ngram_size
        ngram.size_m = config.draft_max
        spec.types = [kinds.COMMON_SPECULATIVE_TYPE_NGRAM_SIMPLE]


def draft_counts(timings: dict[str, Any] | None) -> tuple[int, int]:
    """``(drafted, accepted)`` tokens from a llama.cpp result's ``timings`` (0, 0 without drafting)."""
    if not timings:
        return 0, 0
    return int(timings.get("draft_n") or 0), int(timings.get("draft_n_accepted") or 0)


class SpeculationGate:
    """Decides per request whether to speculate, from the recent acceptance rate and the load.

    The rate is an exponential moving average over requests, each weighted by how many
    tokens it drafted (a request that drafted nothing says nothing about acceptance). It
    starts at 1: one unlucky request (a single wrong draft in a free-form answer) must not
    switch speculation off for the requests after it; about four in a row that draft in
    vain do. Only the event loop calls it, so it needs no lock.
    """

    ALPHA = 0.3
    """Weight of the newest request in the moving acceptance rate."""

    def __init__(self, config: SpeculativeConfig) -> None:
        self.config = config
        self.drafted = 0
        self.accepted = 0
        self.rate = 1.0
        self.skipped = 0
        """Requests sent to the plain server for low acceptance since the last probe."""

    @property
    def enabled(self) -> bool:
        """False while the recent acceptance rate is below the configured minimum."""
        return self.rate >= self.config.min_acceptance

    def choose(self, running: int) -> bool:
        """Whether the next request speculates, with ``running`` requests already on the engine."""
        if running >= self.config.max_streams:
            return False
        if self.enabled:
            return True
        self.skipped += 1
        if self.skipped >= self.config.probe_every:
            self.skipped = 0
            return True
        return False

    def record(self, drafted: int, accepted: int) -> None:
        """Count one speculating request's drafts."""
        self.drafted += drafted
        self.accepted += accepted
        if drafted <= 0:
            return
        rate = accepted / drafted
        # Weighted by the draft's size relative to a full step, so one tiny draft cannot flip the gate.
        weight = self.ALPHA * min(1.0, drafted / max(1, self.config.draft_max))
        self.rate += weight * (rate - self.rate)

    def snapshot(self) -> dict[str, Any]:
        """Totals and the current rate, for health and logs."""
        return {"kind": self.config.kind, "drafted_tokens": self.drafted, "accepted_tokens": self.accepted,
                "acceptance_rate": round(self.rate, 4), "enabled": self.enabled}
