"""AOI settings of the harvest checks: record tolerance, window widening, completeness and
Sentinel-1 CARD ordering (sections ``harvest:``, ``completeness:``, ``ordering:`` of an AOI
file). Unknown keys are errors, as everywhere in the AOI files. Every key is documented in
``docs/harvest.md``.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class HarvestConfig(_Strict):
    """Per-record checks of the harvest and the widening of scheduled windows."""

    # A catalogue sensing time further than this from the time in the product name is
    # flagged and the name's time is used. Both are the sensing start of the same product
    # (S1: the slice; S2: the datatake, which resto/STAC report unchanged, 0 s apart in the
    # real CREODIAS and earth-search fixtures); one hour is far above any rounding and far
    # below the errors that matter (a default epoch, a wrong field, a day shift).
    date_tolerance_hours: float = Field(default=1.0, gt=0)
    # Scheduled runs start at the end of the last successful harvest of the card (minus
    # lookback_days) when that is earlier than their own window (cbm_ops.catalogue.widened_window).
    widen: bool = True
    # Cap on how far back a widened window reaches (days before the run's end); None = back
    # to the AOI's start_date.
    max_widen_days: float | None = Field(default=None, gt=0)


class CompletenessConfig(_Strict):
    """Expected acquisitions from the revisit pattern vs harvested vs extracted."""

    enabled: bool = True
    # Fail the completeness check (CLI exit code 3, the DAG task fails) when more than this
    # percentage of the expected acquisitions of the window is missing; None = only warn.
    fail_above_pct: float | None = Field(default=None, ge=0, le=100)
    # Repeat cycle of ONE satellite on one relative orbit (ESA mission guides:
    # Sentinel-2 10 days, Sentinel-1 12 days; two satellites give 5 and 6 days).
    s2_repeat_days: float = Field(default=10.0, gt=0)
    s1_repeat_days: float = Field(default=12.0, gt=0)
    # A product within this time of an expected date is that acquisition.
    match_hours: float = Field(default=12.0, gt=0)
    # Expected acquisitions younger than this are "pending" (not yet published), not missing.
    grace_days: float = Field(default=3.0, ge=0)
    # A satellite whose acquisitions stop (start) this many repeat cycles before (after)
    # another satellite's is out of service after (before) them: S1B after 2021-12-23.
    retired_after_cycles: float = Field(default=2.0, gt=0)


class OrderingConfig(_Strict):
    """Order missing Sentinel-1 CARD products from the DIAS processing service (off by default).

    Endpoints and payloads: see docs/harvest.md (CREODIAS finder order API).
    """

    enabled: bool = False
    conn_id: str = "cbm_order"          # Airflow connection (http): login, password, host = API URL
    url: str = "https://finder.creodias.eu/api/order"   # order API base (without trailing /)
    token_url: str = "https://auth.creodias.eu/auth/realms/DIAS/protocol/openid-connect/token"
    client_id: str = "CLOUDFERRO_PUBLIC"
    cards: tuple[Literal["bs", "c6"], ...] = ("bs", "c6")
    # PaaS processor per card (the seed's settings_historical.json: card_bs, coh)
    processors: dict[str, str] = Field(default_factory=lambda: {"bs": "card_bs", "c6": "coh"})
    # resto productType of the source products (finder: GRD / SLC; CDSE: IW_GRDH_1S / IW_SLC__1S)
    source_product_types: dict[str, str] = Field(default_factory=lambda: {"bs": "GRD", "c6": "SLC"})
    # extra resto query parameters of the source search (the seed: IW sensor mode)
    source_query: dict[str, str] = Field(default_factory=lambda: {"sensorMode": "IW"})
    priority: int = 1
    order_name: str = "{aoi}_{card}_{start:%Y%m%d}_{end:%Y%m%d}"
    max_products_per_order: int = Field(default=500, ge=1)
    max_products_per_run: int = Field(default=2000, ge=1)   # cost guard per call
    poll_interval_minutes: float = Field(default=60.0, ge=0)
    # scheduled harvests reach back to the sensing time of products ordered within this many
    # days and not harvested yet (CARD products carry their source's sensing time)
    pickup_days: float = Field(default=30.0, ge=0)
    reorder_failed: bool = False        # order again products whose earlier order item failed
    timeout_s: float = 60.0
    retries: int = Field(default=5, ge=0)

    @field_validator("processors", "source_product_types")
    @classmethod
    def _cards(cls, v: dict[str, str]) -> dict[str, str]:
        bad = set(v) - {"bs", "c6"}
        if bad:
            raise ValueError(f"only cards bs and c6 can be ordered, not {sorted(bad)}")
        return v
