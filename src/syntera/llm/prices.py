"""What a reply costs: its tokens at its model's configured prices."""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal

from syntera.config import ModelPrice
from syntera.llm.local import is_local_name
from syntera.llm.models import Usage

FREE = ModelPrice(prompt=Decimal(0), completion=Decimal(0))
MILLION = Decimal(1_000_000)
# Dollars to eight places: a single token of the cheapest model still shows.
CENT_FRACTIONS = Decimal("0.00000001")


def price_of(prices: Mapping[str, ModelPrice], model: str) -> ModelPrice | None:
    """The price of ``model``: the local model's is nothing; otherwise its own entry, or
    that of the longest configured name it starts with followed by "-" (a dated
    snapshot such as gpt-4o-mini-2024-07-18 is priced as gpt-4o-mini). None: unknown."""
    if is_local_name(model):
        return FREE
    wanted = model.strip().lower()
    by_name = {name.lower(): price for name, price in prices.items()}
    if wanted in by_name:
        return by_name[wanted]
    prefixes = [name for name in by_name if wanted.startswith(name + "-")]
    if not prefixes:
        return None
    return by_name[max(prefixes, key=len)]


def cost_of(prices: Mapping[str, ModelPrice], usage: Usage) -> Decimal | None:
    """The dollars ``usage`` cost at ``prices``; None when its model has no price."""
    price = price_of(prices, usage.model)
    if price is None:
        return None
    cost = (
        price.prompt * usage.prompt_tokens + price.completion * usage.completion_tokens
    ) / MILLION
    if cost == 0:
        return Decimal(0)  # "0", not "0E-8"
    return cost.quantize(CENT_FRACTIONS)
