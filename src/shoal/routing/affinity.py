"""Cache-affinity balancing: send a request to the replica most likely to hold its prompt prefix.

A model's deployments are balanced by fewest outstanding requests unless its catalog entry says
``balance: prefix``. Then, in the spirit of SGLang's cache-aware router, each request goes to the
replica that served (in order of precedence) the response it continues (``previous_response_id``),
its ``prompt_cache_key``, or the longest prefix of its prompt, so the replica's prompt cache
(llama.cpp's ``cache_prompt``, vLLM's and SGLang's prefix caches) skips recomputing it.

Affinity yields to load: when the favoured replica has ``abs_threshold`` more requests outstanding
than the least-loaded one *and* more than ``rel_threshold`` times as many, or when its circuit is
open, the request goes to the least-loaded replica instead (SGLang's ``balance_abs_threshold`` and
``balance_rel_threshold``), so affinity never makes a hot spot.

The prefix index is approximate: the prompt's text (tools, then each message's role and content)
is cut into fixed blocks of characters, hashed as a chain (a block's hash covers every block before
it), and each (block hash, replica) pair is kept in an LRU bounded by ``max_blocks``. Looking up a
prompt costs O(its length), capped at ``max_chars``. Character blocks, not tokens: a replica that
matches more blocks shares a longer token prefix too, which is all routing needs.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Generic, Literal, TypeVar

from shoal.core.context import RequestContext
from shoal.core.deployment import Deployment
from shoal.core.operation import Operation
from shoal.core.types import GenerationRequest
from shoal.routing.strategies import by_load

BalancePolicy = Literal["least_outstanding", "prefix"]
BALANCE_POLICIES: tuple[str, ...] = ("least_outstanding", "prefix")

K = TypeVar("K")
V = TypeVar("V")


@dataclass(frozen=True)
class BalanceSpec:
    """How one model's deployments share its requests (the catalog's ``balance``)."""

    policy: BalancePolicy = "least_outstanding"
    abs_threshold: int = 4
    """Affinity yields when the favoured replica has more than this many requests outstanding
    beyond the least-loaded one (and the relative threshold is passed too)."""
    rel_threshold: float = 1.5
    """... and more than this many times the least-loaded one's outstanding requests."""


def load(dep: Deployment) -> int:
    """Requests running or queued on ``dep`` (what the imbalance thresholds count)."""
    return dep.admission.running + dep.admission.queued


def overloaded(favoured: Deployment, deps: Sequence[Deployment], spec: BalanceSpec) -> bool:
    """Whether sending one more request to ``favoured`` would make a hot spot among ``deps``."""
    least = min(load(d) for d in deps)
    mine = load(favoured)
    return mine - least > spec.abs_threshold and mine > spec.rel_threshold * least


def prefer(deps: Sequence[Deployment], favoured: Deployment | None, spec: BalanceSpec) -> list[Deployment]:
    """``deps`` by load, with ``favoured`` first unless it is overloaded or its circuit is open."""
    ordered = by_load(deps)
    if favoured is None or favoured not in ordered or not favoured.breaker.available():
        return ordered
    if overloaded(favoured, deps, spec):
        return ordered
    return [favoured, *(d for d in ordered if d is not favoured)]


def prompt_text(request: Operation, max_chars: int) -> str:
    """The request's prompt as text, in the order a chat template renders it, cut at ``max_chars``."""
    if not isinstance(request, GenerationRequest):
        return ""
    pieces: list[str] = []
    size = 0

    def add(text: str) -> bool:
        nonlocal size
        pieces.append(text)
        size += len(text)
        return size < max_chars

    for tool in request.tools:
        spec = {"name": tool.name, "description": tool.description, "parameters": tool.parameters}
        if not add(json.dumps(spec, sort_keys=True, separators=(",", ":"))):
            return "".join(pieces)[:max_chars]
    for msg in request.messages:
        # Separators that cannot occur in JSON text keep "ab"+"c" apart from "a"+"bc".
        parts = [f"\x1e{msg.role}\x1f", msg.content, msg.reasoning or "",
                 *(f"\x1d{c.name}\x1f{c.arguments}" for c in msg.tool_calls)]
        for part in parts:
            if not add(part):
                return "".join(pieces)[:max_chars]
    return "".join(pieces)


def block_hashes(text: str, block_chars: int) -> list[int]:
    """Chained hashes of ``text``'s whole blocks: the i-th covers the first i+1 blocks."""
    out: list[int] = []
    h = 0
    for start in range(0, len(text) - block_chars + 1, block_chars):
        h = hash((h, text[start:start + block_chars]))
        out.append(h)
    return out


class Lru(Generic[K, V]):
    """A mapping that keeps only its ``limit`` most recently used entries."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._items: OrderedDict[K, V] = OrderedDict()

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, key: object) -> bool:
        return key in self._items

    def get(self, key: K) -> V | None:
        """The value, marked as used; None if absent."""
        if key not in self._items:
            return None
        self._items.move_to_end(key)
        return self._items[key]

    def put(self, key: K, value: V) -> None:
        """Set (and mark as used), dropping the least recently used entries over the limit."""
        self._items[key] = value
        self._items.move_to_end(key)
        while len(self._items) > self.limit:
            self._items.popitem(last=False)

    def keys(self) -> Iterator[K]:
        """Keys, least recently used first."""
        return iter(self._items)


class AffinityIndex:
    """Which replica of one model served which conversations, cache keys and prompt prefixes (recently).

    Bounded: ``max_keys`` conversation and cache-key entries and ``max_blocks`` (prefix block,
    replica) pairs, each dropped least recently used first.
    """

    def __init__(self, *, block_chars: int = 128, max_chars: int = 64_000, max_blocks: int = 50_000,
                 max_keys: int = 10_000) -> None:
        self.block_chars = block_chars
        self.max_chars = max_chars
        self.blocks: Lru[tuple[int, str], None] = Lru(max_blocks)
        self.keys: Lru[tuple[str, str | None, str], str] = Lru(max_keys)

    def _hashes(self, request: Operation) -> list[int]:
        return block_hashes(prompt_text(request, self.max_chars), self.block_chars)

    def matched_blocks(self, name: str, hashes: Sequence[int]) -> int:
        """How many leading blocks of a prompt (its chained ``hashes``) replica ``name`` has seen."""
        for i in range(len(hashes) - 1, -1, -1):
            # A chained hash covers the blocks before it: the first hit from the end is the longest prefix.
            if (hashes[i], name) in self.blocks:
                return i + 1
        return 0

    def favoured(self, deps: Sequence[Deployment], request: Operation,
                 context: RequestContext) -> Deployment | None:
        """The replica most likely to hold the request's prefix, or None when none is known to."""
        by_name = {d.name: d for d in deps}
        for key in self._keys(request, context, lookup=True):
            name = self.keys.get(key)
            if name in by_name:
                return by_name[name]
        hashes = self._hashes(request)
        if not hashes:
            return None
        matches = {d.name: self.matched_blocks(d.name, hashes) for d in deps}
        best = max(matches.values())
        if best == 0:
            return None
        # Equal matches (a shared system prompt on several replicas): the least loaded of them.
        return min((d for d in deps if matches[d.name] == best), key=load)

    def record(self, dep: Deployment, request: Operation, context: RequestContext) -> None:
        """``dep`` is serving ``request``: its conversation, cache key and prefix are now there."""
        for key in self._keys(request, context, lookup=False):
            self.keys.put(key, dep.name)
        # Deepest block first, so the shared leading blocks are the most recently used and evicted last.
        for h in reversed(self._hashes(request)):
            self.blocks.put((h, dep.name), None)

    @staticmethod
    def _keys(request: Operation, context: RequestContext,
              lookup: bool) -> Iterator[tuple[str, str | None, str]]:
        """The affinity keys of a request: to look up (what it continues) or to record (what it makes)."""
        conversation = context.previous_response_id if lookup else context.response_id
        if conversation:
            yield ("response", None, conversation)
        cache_key = getattr(request, "prompt_cache_key", None)
        if cache_key:
            # Callers' keys are theirs: two tenants choosing the same string do not share a replica.
            yield ("cache_key", context.owner, cache_key)


class Balancer:
    """Orders a model's deployments for a request by its balancing policy; owns the affinity indexes."""

    def __init__(self, specs: Mapping[str, BalanceSpec] | None = None, **index_options: int) -> None:
        self.specs = dict(specs or {})
        self._index_options = index_options
        self.indexes: dict[str, AffinityIndex] = {}

    def index(self, model_id: str) -> AffinityIndex | None:
        """The affinity index of ``model_id`` if it balances by prefix (made on first use)."""
        spec = self.specs.get(model_id)
        if spec is None or spec.policy != "prefix":
            return None
        found = self.indexes.get(model_id)
        if found is None:
            found = self.indexes[model_id] = AffinityIndex(**self._index_options)
        return found

    def order(self, deps: Sequence[Deployment], request: Operation, context: RequestContext) -> list[Deployment]:
        """``deps`` (one model's) best first: by load, or by cache affinity within the load thresholds."""
        index = self.index(deps[0].card.id) if deps else None
        if index is None:
            return by_load(deps)
        return prefer(deps, index.favoured(deps, request, context), self.specs[deps[0].card.id])

    def routed(self, dep: Deployment, request: Operation, context: RequestContext) -> None:
        """``dep`` was planned first for ``request``: remember it, if its model balances by prefix."""
        index = self.index(dep.card.id)
        if index is not None:
            index.record(dep, request, context)
