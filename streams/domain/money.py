"""Money conversion: the one rule every stage and the model use.

Rates come from settings: the reference rates in ``quality.toml`` (units of the reference
currency per unit of a currency) or an administration's own in its revenue settings. A
currency without a rate is unknown, never guessed.
"""

from __future__ import annotations

from collections.abc import Mapping


def convert(amount: float | None, currency: str | None, rates: Mapping[str, float]) -> float | None:
    """``amount`` of ``currency`` in the currency ``rates`` are quoted in; None when the amount
    or the currency's rate is unknown."""
    if amount is None or currency is None:
        return None
    rate = rates.get(currency)
    return None if rate is None else amount * rate
