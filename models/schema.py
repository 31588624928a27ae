"""The canonical columns of a historical declaration, whatever the user's own names for them.

One row is one declaration (a pre-arrival declaration of one consignment, its item lines
aggregated: summed mass, quantity and value, the HS code and origin of its main line, the
descriptions joined). Every module of ``models`` speaks these names; ``mapping`` translates.
"""

from __future__ import annotations

import numpy as np
import polars as pl

DATE = "date"
LABEL = "fraud"
REVENUE = "revenue_recovered"

# Role -> polars dtype. Values are in the reference currency (quality.toml's reference_currency).
CANONICAL: dict[str, pl.DataType] = {
    DATE: pl.Date(),
    "seller_id": pl.String(),
    "importer_id": pl.String(),
    "declarant_id": pl.String(),
    "carrier_id": pl.String(),
    "hs_code": pl.String(),
    "origin": pl.String(),
    "departure_country": pl.String(),
    "destination": pl.String(),
    "net_mass_kg": pl.Float64(),
    "quantity": pl.Float64(),
    "value": pl.Float64(),
    "tax_rate": pl.Float64(),
    "description": pl.String(),
    "platform": pl.String(),
    LABEL: pl.Int8(),
    REVENUE: pl.Float64(),
}

# Without these a declaration cannot be placed in time, labelled or valued.
REQUIRED = (DATE, LABEL, "hs_code", "value", "net_mass_kg")
# Roles that are not features of the declaration itself.
OUTCOMES = (LABEL, REVENUE)


def conform(frame: pl.DataFrame, extra: dict[str, pl.DataType] | None = None) -> pl.DataFrame:
    """Every canonical column (null when absent) in its dtype, plus the declared extras."""
    columns = {**CANONICAL, **(extra or {})}
    return frame.select(
        (pl.col(name) if name in frame.columns else pl.lit(None)).cast(dtype).alias(name)
        for name, dtype in columns.items()
    )


def recovered_revenue(frame: pl.DataFrame) -> np.ndarray | None:
    """Revenue recovered per row, or None when the history does not record it at all.

    None (shown as "—" / null) and not zeros: a history without revenue says nothing about it.
    """
    if REVENUE not in frame.columns or frame.get_column(REVENUE).null_count() == frame.height:
        return None
    return frame.get_column(REVENUE).fill_null(0.0).to_numpy()
