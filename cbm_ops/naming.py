"""Sentinel product names: parse them, derive tile, UTM EPSG, orbit and store paths.

Conventions (sources):

* Sentinel-2 ``MMM_MSIL2A_YYYYMMDDTHHMMSS_Nxxyy_ROOO_Txxxxx_<discriminator>``: mission,
  product level, datatake sensing start, processing baseline, relative orbit, MGRS tile
  (ESA "Sentinel-2 MSI naming convention"). The MGRS latitude band letter gives the
  hemisphere: C..M south (EPSG 327zz), N..X north (EPSG 326zz).
* Sentinel-1 ``MMM_BB_TTTR_LFPP_start_stop_orbit_datatake_uid`` (ESA "Sentinel-1 product
  naming"); CREODIAS CARD products append ``_CARD_BS`` / ``_CARD_COH6`` to the source name.
  Relative orbit from the absolute orbit: S1A ``(abs - 73) % 175 + 1``,
  S1B ``(abs - 27) % 175 + 1`` (ESA Sentinel-1 user guide, "orbit").
* Store layout of the CREODIAS ``/eodata`` tree (ec-jrc/cbm extraction code)::

    Sentinel-2/MSI/L2A/{Y}/{m}/{d}/{reference}.SAFE
    Sentinel-1/SAR/CARD-BS/{Y}/{m}/{d}/{reference}/{reference}.data/Gamma0_VV.img
    Sentinel-1/SAR/CARD-COH6/{Y}/{m}/{d}/{reference}/{reference}.tif
"""

from __future__ import annotations

import datetime as dt
import math
import re
from dataclasses import dataclass

from .errors import ProductNameError

_S2 = re.compile(r"^(S2[A-D])_MSI(L2A|L1C)_(\d{8}T\d{6})_N(\d{4})_R(\d{3})_T(\d{2}[C-HJ-NP-X][A-HJ-NP-Z]{2})_(\w+)$")
_S1 = re.compile(r"^(S1[A-D])_(\w{2})_(\w{4})_(\w{4})_(\d{8}T\d{6})_(\d{8}T\d{6})_(\d{6})_(\w{6})_(\w{4})"
                 r"(?:_(CARD_BS|CARD_COH6|CARD_COH12|COG))?$")
_EXTENSIONS = (".SAFE", ".zip", ".tif", ".dim")


def strip_extension(title: str) -> str:
    """Product name without ``.SAFE``/``.zip``/``.tif``/``.dim`` (the ``reference``)."""
    for ext in _EXTENSIONS:
        if title.endswith(ext):
            return title[: -len(ext)]
    return title


def utm_epsg_for_tile(tile: str) -> int:
    """UTM EPSG code of an MGRS tile: 326zz in the north, 327zz in the south.

    Parameters
    ----------
    tile : str
        MGRS tile such as ``31UDS`` (zone 31, latitude band U -> north).

    Raises
    ------
    ProductNameError
        If the tile is not a valid MGRS 100 km square identifier.
    """
    if not re.fullmatch(r"\d{2}[C-HJ-NP-X][A-HJ-NP-Z]{2}", tile):
        raise ProductNameError(f"not an MGRS tile: {tile!r}")
    zone = int(tile[:2])
    if not 1 <= zone <= 60:
        raise ProductNameError(f"UTM zone out of range in tile {tile!r}")
    return (32600 if tile[2] >= "N" else 32700) + zone


def utm_epsg_for_lonlat(lon: float, lat: float) -> int:
    """UTM EPSG code of the standard zone containing ``(lon, lat)`` (degrees, WGS 84).

    Uses the regular 6-degree zones ``floor((lon + 180) / 6) + 1`` (no Norway/Svalbard
    exceptions) and the hemisphere of ``lat``, as SNAP's "Auto UTM" does for CARD-BS.
    """
    zone = int(math.floor((lon + 180.0) / 6.0)) % 60 + 1
    return (32600 if lat >= 0 else 32700) + zone


@dataclass(frozen=True)
class ProductName:
    """Fields of a Sentinel-2 L2A or Sentinel-1 (CARD) product name."""

    reference: str
    mission: str                 # S2A, S1B ...
    sensor: str                  # 2A, 1B ... (dias_catalogue.sensor)
    card: str | None             # s2, bs, c6, or None (not a CARD product we extract)
    sensing_start: dt.datetime
    tile: str | None = None
    relative_orbit: int | None = None
    processing_baseline: str | None = None   # "05.10"
    absolute_orbit: int | None = None
    product_level: str | None = None


def parse(title: str) -> ProductName:
    """Parse a product name (with or without extension).

    Returns
    -------
    ProductName
        ``card`` is ``"s2"`` for S2 L2A, ``"bs"``/``"c6"`` for CARD-BS/CARD-COH6 and
        ``None`` for other products (L1C, GRD, SLC ...).

    Raises
    ------
    ProductNameError
        If the name is neither a Sentinel-2 nor a Sentinel-1 product name.
    """
    ref = strip_extension(title.strip())
    m = _S2.match(ref)
    if m:
        mission, level, start, base, rel, tile, _ = m.groups()
        return ProductName(
            reference=ref, mission=mission, sensor=mission[1:], card="s2" if level == "L2A" else None,
            sensing_start=dt.datetime.strptime(start, "%Y%m%dT%H%M%S"), tile=tile,
            relative_orbit=int(rel), processing_baseline=f"{base[:2]}.{base[2:]}",
            product_level=level)
    m = _S1.match(ref)
    if m:
        mission, _mode, ptype, _lfpp, start, _stop, absorb, _dt, _uid, card = m.groups()
        absolute = int(absorb)
        rel = None
        if mission == "S1A":
            rel = (absolute - 73) % 175 + 1
        elif mission == "S1B":
            rel = (absolute - 27) % 175 + 1
        return ProductName(
            reference=ref, mission=mission, sensor=mission[1:],
            card={"CARD_BS": "bs", "CARD_COH6": "c6"}.get(card or ""),
            sensing_start=dt.datetime.strptime(start, "%Y%m%dT%H%M%S"),
            relative_orbit=rel, absolute_orbit=absolute, product_level=ptype)
    raise ProductNameError(f"not a Sentinel-1/-2 product name: {title!r}")


def store_path(reference: str, card: str, obstime: dt.datetime) -> str:
    """Relative path of a product in the CREODIAS ``/eodata`` layout.

    Returns the product directory: the ``.SAFE`` directory for S2, the product
    directory holding ``{reference}.data``/``{reference}.tif`` for CARD-BS/COH6.

    Raises
    ------
    ValueError
        For an unknown card.
    """
    ymd = obstime.strftime("%Y/%m/%d")
    if card == "s2":
        return f"Sentinel-2/MSI/L2A/{ymd}/{reference}.SAFE"
    if card == "bs":
        return f"Sentinel-1/SAR/CARD-BS/{ymd}/{reference}"
    if card == "c6":
        return f"Sentinel-1/SAR/CARD-COH6/{ymd}/{reference}"
    raise ValueError(f"unknown card {card!r}")
