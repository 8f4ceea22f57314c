"""Prices per million tokens; cached input at the cached rate; reasoning billed as output."""

from __future__ import annotations

import pytest

from shoal.core.backend import ModelCard
from shoal.config import ConfigError, build_settings
from shoal.usage.pricing import FREE, PriceTable, Pricing, parse_prices

CARD = ModelCard(id="m", owned_by="shoal", created=0, context_length=4096, aliases=("m-alias",))


def test_cost_splits_cached_input() -> None:
    p = Pricing(input=2.0, cached_input=0.5, output=8.0)
    # 1000 input of which 400 cached, 100 output (reasoning tokens are part of output_tokens)
    assert p.cost(1000, 400, 100) == pytest.approx((600 * 2.0 + 400 * 0.5 + 100 * 8.0) / 1e6)
    assert p.cost(10, 50, 0) == pytest.approx(10 * 0.5 / 1e6)  # cached never exceeds input
    assert Pricing(input=3.0).cached_rate == 3.0  # no cached price: the input price
    assert FREE.cost(10**6, 0, 10**6) == 0 and FREE.free


def test_parse_prices() -> None:
    table = parse_prices({"m": {"input": 1, "output": 2}, "x": {"input": 0.1, "cached_input": 0.01, "output": 0.4}})
    assert table["m"] == Pricing(1.0, None, 2.0) and table["x"].cached_rate == 0.01
    for bad, match in (({"m": {"inptu": 1}}, "unknown field"), ({"m": {"input": -1}}, "non-negative"),
                       ({"m": {"input": "a"}}, "non-negative"), ({"m": 3}, "mapping"),
                       ({"m": {"output": True}}, "non-negative")):
        with pytest.raises(ValueError, match=match):
            parse_prices(bad)


def test_settings_validate_prices() -> None:
    assert build_settings(prices={"m": {"input": 1}}).prices == {"m": {"input": 1}}
    with pytest.raises(ConfigError, match="prices.m.input"):
        build_settings(prices={"m": {"input": -1}})


def test_price_table_lookup_order() -> None:
    assert PriceTable({}).for_card(CARD) == FREE
    assert PriceTable({"m-alias": Pricing(input=1)}).for_card(CARD) == Pricing(input=1)
    assert PriceTable({"m": Pricing(input=2), "m-alias": Pricing(input=1)}).for_card(CARD) == Pricing(input=2)
    catalog = ModelCard(id="c", owned_by="x", created=0, context_length=1, extra={"pricing": {"input": 5.0}})
    assert PriceTable({}).for_card(catalog) == Pricing(input=5.0)
    broken = ModelCard(id="c", owned_by="x", created=0, context_length=1, extra={"pricing": "free?"})
    assert PriceTable({}).for_card(broken) == FREE
