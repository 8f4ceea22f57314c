"""Model prices (USD per million tokens) and the cost of a generation."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from shoal.core.backend import ModelCard

PER_MILLION = 1_000_000
PRICE_FIELDS = ("input", "cached_input", "output")


@dataclass(frozen=True)
class Pricing:
    """What a model costs, in USD per million tokens.

    Cached input tokens are billed at ``cached_input`` (``input`` when unset),
    the rest of the input at ``input``; reasoning tokens are output tokens.
    """

    input: float = 0.0
    cached_input: float | None = None
    output: float = 0.0

    @property
    def cached_rate(self) -> float:
        """The rate of cached input tokens."""
        return self.input if self.cached_input is None else self.cached_input

    @property
    def free(self) -> bool:
        """Whether every token costs nothing."""
        return self.input == 0 and self.cached_rate == 0 and self.output == 0

    def cost(self, input_tokens: int, cached_tokens: int, output_tokens: int) -> float:
        """USD for one generation; ``output_tokens`` already includes reasoning tokens."""
        cached = min(max(cached_tokens, 0), max(input_tokens, 0))
        fresh = max(input_tokens, 0) - cached
        return (fresh * self.input + cached * self.cached_rate + max(output_tokens, 0) * self.output) / PER_MILLION

    @classmethod
    def from_mapping(cls, value: Any, where: str = "price") -> Pricing:
        """Parse ``{input, cached_input, output}``; raise ValueError naming the bad field."""
        if isinstance(value, Pricing):
            return value
        if not isinstance(value, Mapping):
            raise ValueError(f"{where}: expected a mapping with {', '.join(PRICE_FIELDS)} (USD per 1M tokens)")
        unknown = sorted(set(value) - set(PRICE_FIELDS))
        if unknown:
            raise ValueError(f"{where}: unknown field(s) {', '.join(map(str, unknown))}; "
                             f"known: {', '.join(PRICE_FIELDS)}")
        parsed: dict[str, float] = {}
        for name in PRICE_FIELDS:
            raw = value.get(name)
            if raw is None:
                continue
            if isinstance(raw, bool) or not isinstance(raw, (int, float)) or not math.isfinite(raw) or raw < 0:
                raise ValueError(f"{where}.{name}: expected a non-negative number of USD per 1M tokens, got {raw!r}")
            parsed[name] = float(raw)
        return cls(**parsed)  # type: ignore[arg-type]

    def as_dict(self) -> dict[str, float]:
        """The wire / config form."""
        return {"input": self.input, "cached_input": self.cached_rate, "output": self.output}


FREE = Pricing()


def parse_prices(prices: Mapping[str, Any]) -> dict[str, Pricing]:
    """The ``prices`` setting (model id -> {input, cached_input, output}) as :class:`Pricing` values."""
    if not isinstance(prices, Mapping):
        raise ValueError("prices: expected a mapping of model id to {input, cached_input, output}")
    return {str(model): Pricing.from_mapping(value, f"prices.{model}") for model, value in prices.items()}


class PriceTable:
    """Finds a model's price: the ``prices`` setting first, then the catalog's card, else free."""

    def __init__(self, configured: Mapping[str, Pricing] | None = None) -> None:
        self._configured = dict(configured or {})
        self._parsed: dict[int, tuple[ModelCard, Pricing]] = {}

    def for_card(self, card: ModelCard) -> Pricing:
        """The price of the model ``card`` describes (by id, then by alias)."""
        # Cards are fixed once served; a price is looked up on every request (the card is kept so its id stays its own).
        known = self._parsed.get(id(card))
        if known is not None and known[0] is card:
            return known[1]
        price = self._lookup(card)
        self._parsed[id(card)] = (card, price)
        return price

    def _lookup(self, card: ModelCard) -> Pricing:
        for name in (card.id, *card.aliases):
            if name in self._configured:
                return self._configured[name]
        catalog = card.extra.get("pricing")
        if catalog is not None:
            try:
                return Pricing.from_mapping(catalog, f"{card.id}.pricing")
            except ValueError:
                return FREE
        return FREE
