"""The simulated world's fraud: which consignments are truly fraudulent, how, and whether it shows.

The carrier simulator and the synthetic history draw from one world (``simulation.yaml``): the
same sellers (``sellers.world_seed``), carriers, platforms and goods, buyers drawn the same way
(mostly one-off, as e-commerce buyers are), and the fraud described here. A fraudulent
consignment has one mechanism: undervaluation, a misdeclared HS code, counterfeit goods, a
split shipment or prohibited goods. Some fraud leaves no trace in the filed data at all
(``hidden_share``: the goods in the parcel are not the ones declared, the price is
plausible), as real fraud often does; it caps what any model can reach.

The truth never enters a filing. The simulator hands it over beside each message
(``SimulatedFiling.truth``) and can write it to a side file; only the measuring tools and the
simulated officers read it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MECHANISMS = ("undervaluation", "misdeclared_hs", "counterfeit", "split_shipment", "prohibited")


@dataclass(frozen=True, slots=True)
class Brand:
    """An IPR-protected brand a counterfeiter puts on goods of its chapters (ipr_brands.yaml)."""

    name: str
    chapters: tuple[str, ...]


@dataclass(frozen=True)
class FraudSettings:
    """simulation.yaml ``fraud``: how often, by whom and how consignments are fraudulent."""

    rate: float  # share of consignments truly fraudulent
    hidden_share: float  # of which nothing in the filing shows
    risky_seller_share: float
    risky_seller_factor: float
    watchlisted_share: float  # of risky sellers, those under a watchlist entry's name
    risky_buyer_share: float
    risky_buyer_factor: float
    signal_factors: dict[str, float]  # a consignment showing the signal is this much likelier
    mechanisms: dict[str, float]  # relative weights
    undervaluation_factor: tuple[float, float]  # declared share of the true value
    misdeclared_value_factor: tuple[float, float]
    split_parts: tuple[int, int]
    split_total_eur: tuple[float, float]
    split_gap_messages: tuple[int, int]  # messages between two parts of a split
    prohibited_hs: tuple[str, ...]  # HS prefixes of restricted goods that are prohibited
    disguised_share: float  # prohibited goods declared under a vague description
    brands: tuple[Brand, ...]
    watchlist_names: tuple[tuple[str, str | None], ...]  # (seller name, country or None)


@dataclass(frozen=True, slots=True)
class Truth:
    """What the consignment really is; never part of a filing."""

    mechanism: str | None  # one of MECHANISMS; None: not fraudulent
    hidden: bool  # fraud the filed data does not show
    true_value_eur: float  # what the goods are worth (the whole split, for a split's part)
    declared_value_eur: float
    group: str | None = None  # the first house waybill of a split shipment

    @property
    def fraud(self) -> bool:
        return self.mechanism is not None

    def as_record(self, house_waybill: str) -> dict:
        """One line of the ground-truth side file."""
        return {
            "house_waybill": house_waybill,
            "fraud": self.fraud,
            "mechanism": self.mechanism,
            "hidden": self.hidden,
            "true_value_eur": round(self.true_value_eur, 2),
            "declared_value_eur": round(self.declared_value_eur, 2),
            "group": self.group,
        }


CLEAN = None  # a consignment that is what it says


def signal_factor(s: FraudSettings, signals: tuple[str, ...]) -> float:
    return max((s.signal_factors.get(x, 1.0) for x in signals), default=1.0)


def base_rate(
    s: FraudSettings, risky_weight: float, risky_share: float, signal_weights: dict[str, float]
) -> float:
    """The propensity of traced fraud for a consignment with no risk factor, so that traced and
    hidden fraud together make about ``s.rate``.

    ``risky_weight`` is the share of traffic from risky sellers (their popularity),
    ``risky_share`` the simulator's share of consignments showing a targeting signal and
    ``signal_weights`` how often each signal is drawn.
    """
    total = sum(signal_weights.values()) or 1.0
    mean_signal = sum(w * s.signal_factors.get(k, 1.0) for k, w in signal_weights.items()) / total
    mean = (
        (1 + risky_weight * (s.risky_seller_factor - 1))
        * (1 + s.risky_buyer_share * (s.risky_buyer_factor - 1))
        * (1 + risky_share * (mean_signal - 1))
    )
    return s.rate * (1 - s.hidden_share) / mean


def propensity(
    s: FraudSettings, base: float, risky_seller: bool, risky_buyer: bool, signals: tuple[str, ...]
) -> float:
    p = base * signal_factor(s, signals)
    if risky_seller:
        p *= s.risky_seller_factor
    if risky_buyer:
        p *= s.risky_buyer_factor
    return min(p, 0.9)


SEIZED_MECHANISMS = frozenset({"counterfeit", "prohibited"})  # the goods are detained


def examine(
    truths: list[Truth | None],
    tax_rates: np.ndarray,
    u: np.ndarray,
    missed_fraud: float,
    false_finding: float,
    penalty_share: float,
    findable: list[frozenset[str] | None] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """What examinations of these consignments find: (finding?, revenue recovered in EUR).

    One inspection service for the synthetic history and the simulated officers. A fraud is
    missed with probability ``missed_fraud``, an honest consignment gets a (wrong) finding with
    ``false_finding`` (``u``: one uniform draw per consignment). ``findable``: per consignment,
    the mechanisms its examination can find at all (a documentary check sees no counterfeit);
    None: all of them. Recovered: the tax on the undeclared value plus a penalty on the value.
    """
    n = len(truths)
    mechanism = [t.mechanism if t is not None else None for t in truths]
    fraud = np.array([m is not None for m in mechanism], dtype=bool)
    if findable is not None:
        pairs = zip(mechanism, findable, strict=True)
        fraud_seen = np.array([m is not None and (f is None or m in f) for m, f in pairs], bool)
    else:
        fraud_seen = fraud
    missed = fraud_seen & (u < missed_fraud)
    false = ~fraud & (u < false_finding)
    found = (fraud_seen & ~missed) | false
    true_value = np.array([t.true_value_eur if t is not None else 0.0 for t in truths])
    declared = np.array([t.declared_value_eur if t is not None else 0.0 for t in truths])
    split = np.array([m == "split_shipment" for m in mechanism], dtype=bool)
    # a split parcel declared its own value truly: what it dodged is the tax on that value
    undeclared = np.where(split, declared, np.maximum(true_value - declared, 0.0))
    penalty_base = np.where(split, declared, true_value)
    rate = np.nan_to_num(np.asarray(tax_rates, dtype=float)) if n else np.zeros(0)
    recovered = np.where(found & fraud, undeclared * rate + penalty_share * penalty_base, 0.0)
    return found, np.round(recovered, 2)
