"""Valid filings to start tests from; override what a test is about."""

from __future__ import annotations

import copy
import time

HOUR_MS = 3_600_000
WEEK_MS = 7 * 24 * HOUR_MS
# A fixed moment (Wednesday 2026-11-18 13:33 UTC) moved on by whole weeks to the current one:
# the same weekday and time of day in every run, and never so far from the clock of a running
# worker that its timestamps fall outside the plausible window ([bounds] in quality.toml).
_BASE_MS = 1_795_000_000_000
NOW_MS = _BASE_MS + max(0, int(time.time() * 1000) - _BASE_MS) // WEEK_MS * WEEK_MS


def party(name: str, country: str, **over) -> dict:
    p = {
        "name": name,
        "address": f"1 Main Street, 10115 {country} City",
        "country": country,
        "party_id": None,
    }
    p.update(over)
    return p


def pre_loading(waybill: str = "HWB0001", **over) -> dict:
    r = {
        "message_id": f"PL-{waybill}",
        "carrier_id": "EXPRESS-01",
        "house_waybill": waybill,
        "master_waybill": "MAWB-7781",
        "shipper": party("Shenzhen Bright Star Trading Co Ltd", "CN"),
        "consignee": party("Anna Schmidt", "DE"),
        "pieces": 1,
        "gross_weight_kg": 0.6,
        "cargo_description": "cotton t-shirts",
        "hs_code": "610910",
        "origin_country": "CN",
        "destination_country": "DE",
        "route": ["CN", "DE"],
        "planned_loading_time": NOW_MS + 6 * HOUR_MS,
        "filing_time": NOW_MS,
    }
    r.update(copy.deepcopy(over))
    return r


def item(**over) -> dict:
    i = {
        "description": "cotton t-shirt",
        "hs_code": "610910",
        "quantity": 2,
        "net_weight_kg": 0.5,
        "value": 24.0,
        "currency": "EUR",
        "origin_country": "CN",
        "listing_url": None,
    }
    i.update(over)
    return i


def pre_arrival(waybill: str = "HWB0001", **over) -> dict:
    r = {
        "message_id": f"PA-{waybill}",
        "carrier_id": "EXPRESS-01",
        "house_waybill": waybill,
        "master_waybill": "MAWB-7781",
        "seller": party("Shenzhen Bright Star Trading Co Ltd", "CN", party_id="SELLER-88"),
        "consignee": party("Anna Schmidt", "DE"),
        "platform": "ShopFast",
        "items": [item()],
        "vendor_collection_id": None,
        "destination_country": "DE",
        "transport_mode": "AIR",
        "expected_arrival_time": NOW_MS + 30 * HOUR_MS,
        "filing_time": NOW_MS + 8 * HOUR_MS,
    }
    r.update(copy.deepcopy(over))
    return r
