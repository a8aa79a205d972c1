"""AOI settings of the parcel viewer (section ``viewer:`` of an AOI file; docs/analyst-api.md).

The viewer draws parcels on a blank background: nothing is fetched from outside at run
time unless the AOI names a background tile server here.
"""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict, Field, field_validator

_TEMPLATE = re.compile(r"^https?://[^\s\"'<>]+$")


class ViewerConfig(BaseModel):
    """Background layer and zoom limit of the parcel viewer."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # XYZ raster tile template of a background layer, e.g. an agency's orthophoto service
    # "https://tiles.example/ortho/{z}/{x}/{y}.png" (or {-y} for TMS rows); none by default
    background_tiles: str | None = None
    background_attribution: str = ""
    background_max_zoom: int = Field(default=19, ge=0, le=24)
    # parcels are drawn from this zoom level on (a zoom-12 tile is about 6 km wide at 50 deg N,
    # ~2,000 parcels of 2 ha); AOIs of at most small_aoi_parcels parcels are drawn at every zoom
    min_zoom: int = Field(default=12, ge=0, le=16)
    small_aoi_parcels: int = Field(default=5000, ge=0)

    @field_validator("background_tiles")
    @classmethod
    def _template(cls, v: str | None) -> str | None:
        if v is None:
            return v
        if not _TEMPLATE.match(v) or not all(k in v for k in ("{z}", "{x}")) or not ("{y}" in v or "{-y}" in v):
            raise ValueError(f"{v[:120]!r} is not an http(s) tile template with {{z}}, {{x}} and {{y}}")
        return v
