"""STAC items of Sentinel-2 L2A: band assets, value conventions and href signing, in one place.

A STAC item names its band files by asset key, and the keys differ per catalogue (recorded
responses in ``../shared/data/catalogue-responses/``):

=====  =====================  ======================================  ===================
band   CDSE STAC v1           Earth Search (sentinel-2-l2a, -c1-l2a)  Planetary Computer
=====  =====================  ======================================  ===================
B02    ``B02_10m``            ``blue``                                ``B02``
B03    ``B03_10m``            ``green``                               ``B03``
B04    ``B04_10m``            ``red``                                 ``B04``
B05    ``B05_20m``            ``rededge1``                            ``B05``
B08    ``B08_10m``            ``nir`` (``nir08`` is B8A)              ``B08``
B11    ``B11_20m``            ``swir16``                              ``B11``
SCL    ``SCL_20m``            ``scl``                                 ``SCL``
=====  =====================  ======================================  ===================

:data:`ASSET_KEYS` is that table (every band of :data:`cbm_ops.config.S2_NATIVE_RES`); when
no key of it is in an item, the asset whose band name (``bands[].name``, ``eo:bands[].name``)
equals the band and whose ``gsd`` is the band's native resolution is used.

Values. Statistics are stored as DN + BOA_ADD_OFFSET (the scale of baselines before 04.00,
:mod:`cbm_ops.extract.scenes`). What has to be added to the DN of a file depends on where the
file comes from (:func:`offset_for`):

* CDSE SAFE JP2 (mount, S3, CDSE STAC ``s3://eodata`` hrefs): the raw ESA DN; the offset is
  BOA_ADD_OFFSET of ``MTD_MSIL2A.xml`` (ESA PSD), read at extraction.
* a COG with ``raster:bands[].offset`` / ``raster:offset`` and ``scale`` (Earth Search
  ``sentinel-2-c1-l2a``, CDSE STAC): offset/scale DN (-0.1 / 0.0001 = -1000) for baseline
  >= 04.00, 0 before (the baseline rule wins over a ``raster:offset`` on an older product).
* Earth Search ``sentinel-2-l2a`` with ``earthsearch:boa_offset_applied: true``: the COG
  already holds DN + offset (0 to add), although its ``raster:bands`` still say -0.1 (E84
  maintainer, earth-search issue 9). Whether the flag is right for every scene is
  UNCONFIRMED (``catalogue.boa_offset_applied`` chooses the reading).
* Planetary Computer: no ``raster:*``; the COGs hold raw DN (UNCONFIRMED for >= 04.00):
  BOA_ADD_OFFSET from the item's ``product-metadata`` asset (``MTD_MSIL2A.xml``), else
  -1000 for baseline >= 04.00.

Hrefs are stored unsigned at harvest and signed at read time (:func:`make_signer`):
Planetary Computer SAS tokens expire.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from ..config import S2_NATIVE_RES
from ..errors import ConfigError

log = logging.getLogger(__name__)

# Asset key per band, per catalogue family, tried in this order.
ASSET_KEYS: dict[str, tuple[str, ...]] = {
    "B01": ("B01_60m", "coastal", "B01"), "B02": ("B02_10m", "blue", "B02"),
    "B03": ("B03_10m", "green", "B03"), "B04": ("B04_10m", "red", "B04"),
    "B05": ("B05_20m", "rededge1", "B05"), "B06": ("B06_20m", "rededge2", "B06"),
    "B07": ("B07_20m", "rededge3", "B07"), "B08": ("B08_10m", "nir", "B08"),
    "B8A": ("B8A_20m", "nir08", "B8A"), "B09": ("B09_60m", "nir09", "B09"),
    "B11": ("B11_20m", "swir16", "B11"), "B12": ("B12_20m", "swir22", "B12"),
    "SCL": ("SCL_20m", "scl", "SCL"),
}
# The item's MTD_MSIL2A.xml (BOA_ADD_OFFSET), per catalogue.
METADATA_KEYS = ("product_metadata", "product-metadata")
# BOA_ADD_OFFSET of baselines >= 04.00 (ESA: -1000 for every band so far).
DEFAULT_BOA_OFFSET = -1000


def _band_names(asset: dict[str, Any]) -> set[str]:
    out: set[str] = set()
    for key in ("bands", "eo:bands"):
        for b in asset.get(key) or []:
            if isinstance(b, dict):
                out.update(str(b[k]) for k in ("name", "eo:common_name", "common_name") if b.get(k))
    return out


def find_asset(assets: dict[str, Any], band: str) -> tuple[str, dict[str, Any]] | None:
    """The asset of ``band`` in a STAC item's ``assets``: by key (:data:`ASSET_KEYS`), else
    by band name and native resolution (``gsd``); None when there is none."""
    for key in ASSET_KEYS.get(band, (band,)):
        a = assets.get(key)
        if isinstance(a, dict) and isinstance(a.get("href"), str):
            return key, a
    res = S2_NATIVE_RES.get(band)
    for key, a in assets.items():
        if isinstance(a, dict) and isinstance(a.get("href"), str) and band in _band_names(a) \
                and (a.get("gsd") in (None, res)):
            return key, a
    return None


def _raster(asset: dict[str, Any]) -> tuple[float | None, float | None, float | None]:
    """(scale, offset, nodata) of an asset: ``raster:bands[0]`` (STAC 1.0) or the
    ``raster:scale``/``raster:offset``/``nodata`` fields (STAC 1.1, CDSE)."""
    rb = asset.get("raster:bands")
    first = rb[0] if isinstance(rb, list) and rb and isinstance(rb[0], dict) else {}
    scale = first.get("scale", asset.get("raster:scale"))
    offset = first.get("offset", asset.get("raster:offset"))
    nodata = first.get("nodata", asset.get("nodata"))
    return (float(scale) if isinstance(scale, int | float) else None,
            float(offset) if isinstance(offset, int | float) else None,
            float(nodata) if isinstance(nodata, int | float) else None)


def asset_map(item: dict[str, Any], catalogue: str) -> dict[str, Any]:
    """The band hrefs and value conventions of a STAC item, as stored in
    ``dias_catalogue.assets``.

    Returns
    -------
    dict
        ``{band: {"href", "key", "scale", "offset", "nodata"}, ...,
        "_item": {"collection", "catalogue", "boa_offset_applied", "baseline",
        "product_metadata"}}``; bands without an asset are left out.
    """
    a_raw, p_raw = item.get("assets"), item.get("properties")
    assets: dict[str, Any] = a_raw if isinstance(a_raw, dict) else {}
    props: dict[str, Any] = p_raw if isinstance(p_raw, dict) else {}
    out: dict[str, Any] = {}
    for band in ASSET_KEYS:
        hit = find_asset(assets, band)
        if hit is None:
            continue
        key, a = hit
        scale, offset, nodata = _raster(a)
        out[band] = {"href": a["href"], "key": key, "scale": scale, "offset": offset, "nodata": nodata}
    mtd = next((assets[k]["href"] for k in METADATA_KEYS
                if isinstance(assets.get(k), dict) and isinstance(assets[k].get("href"), str)), None)
    out["_item"] = {"collection": item.get("collection"), "catalogue": catalogue,
                    "boa_offset_applied": props.get("earthsearch:boa_offset_applied"),
                    "baseline": props.get("s2:processing_baseline") or props.get("processing:version"),
                    "product_metadata": mtd}
    return out


def is_cog_item(assets: dict[str, Any]) -> bool:
    """Whether the band assets are GeoTIFFs to read in place (COG: Earth Search, Planetary
    Computer) rather than SAFE JP2 files of ``/eodata`` (CDSE STAC)."""
    hrefs = [v["href"] for k, v in assets.items() if not k.startswith("_") and isinstance(v, dict)]
    return bool(hrefs) and all(urlsplit(h).path.lower().endswith((".tif", ".tiff")) for h in hrefs)


def eodata_path(assets: dict[str, Any]) -> str | None:
    """``/eodata/<...>.SAFE`` from an ``s3://eodata/...`` band href (CDSE STAC), cut after the
    product directory; None for other hrefs. Never rebuilt from the name: reprocessed
    products live under ``L2A_N0500/`` (and newer baselines under it too)."""
    for k, v in assets.items():
        if k.startswith("_") or not isinstance(v, dict):
            continue
        href = str(v.get("href", ""))
        if href.startswith("s3://eodata/") and ".SAFE/" in href:
            return "/eodata/" + href[len("s3://eodata/"):].split(".SAFE/", 1)[0] + ".SAFE"
    return None


def offset_for(band: str, entry: dict[str, Any], item: dict[str, Any], baseline: str | None,
               mtd_offsets: dict[str, int] | None, boa_offset_applied: str = "trust_flag"
               ) -> tuple[int, str]:
    """The offset (DN) to add to a COG band's statistics so that they equal the JP2 path's.

    Parameters
    ----------
    band : str
        Band code (``B04``; ``SCL`` gets 0).
    entry : dict
        The band's entry of :func:`asset_map` (``scale``, ``offset``).
    item : dict
        The ``_item`` entry of :func:`asset_map`.
    baseline : str or None
        Processing baseline (``"05.09"``), from the product name.
    mtd_offsets : dict or None
        BOA_ADD_OFFSET per band of the item's ``MTD_MSIL2A.xml`` when it was read.
    boa_offset_applied : {"trust_flag", "assume_applied", "assume_raw"}
        How ``earthsearch:boa_offset_applied`` is read (``catalogue.boa_offset_applied``).

    Returns
    -------
    (int, str)
        Offset in DN and the rule used (recorded in lineage).
    """
    if band == "SCL":
        return 0, "scl"
    flag = item.get("boa_offset_applied")
    applied = {"trust_flag": flag is True, "assume_applied": True, "assume_raw": False}[boa_offset_applied]
    if flag is not None and applied:
        return 0, f"boa_offset_applied ({boa_offset_applied})"
    if baseline is not None and baseline < "04.00":
        return 0, "baseline < 04.00"
    scale, off = entry.get("scale"), entry.get("offset")
    if scale and off is not None:
        stac = int(round(off / scale))
        if mtd_offsets and band in mtd_offsets and mtd_offsets[band] != stac:
            log.warning("%s: raster offset %d DN disagrees with MTD_MSIL2A.xml BOA_ADD_OFFSET %d: using the "
                        "metadata", band, stac, mtd_offsets[band])
            return mtd_offsets[band], "MTD_MSIL2A.xml"
        return stac, "raster offset/scale"
    if mtd_offsets is not None:
        return mtd_offsets.get(band, 0), "MTD_MSIL2A.xml"
    return DEFAULT_BOA_OFFSET, "baseline >= 04.00 default"


# --------------------------------------------------------------------------- signing
Signer = Callable[[str], str]


def _identity(href: str) -> str:
    return href


def make_signer(name: str, url: str = "") -> Signer:
    """The href signer of a catalogue (``catalogue.signer``), applied at read time.

    ``none``: hrefs as stored. ``planetary_computer``: ``planetary_computer.sign_url`` (SAS
    token per storage container, cached by the package; only hosts ending in
    ``.blob.core.windows.net`` are signed). ``auto``: ``planetary_computer`` when ``url`` is
    the Planetary Computer's STAC API, else ``none``.

    Raises
    ------
    ConfigError
        ``planetary_computer`` asked for explicitly and the package is not installed.
    """
    if name == "auto":
        name = "planetary_computer" if "planetarycomputer.microsoft.com" in url else "none"
    if name == "none":
        return _identity
    try:
        import planetary_computer
    except ImportError:
        raise ConfigError("catalogue.signer planetary_computer needs the planetary-computer package "
                          "(pip install planetary-computer)") from None
    return planetary_computer.sign_url


def signer_for(item: dict[str, Any], setting: str = "auto") -> Signer:
    """The signer of a stored asset map (its ``_item.catalogue`` URL decides ``auto``).

    A missing ``planetary-computer`` package with ``auto`` gives unsigned hrefs and one
    warning (the read then fails with HTTP 403/409 if the storage needs a token).
    """
    try:
        return make_signer(setting, str(item.get("catalogue") or ""))
    except ConfigError:
        if setting != "auto":
            raise
        log.warning("planetary-computer is not installed: Planetary Computer hrefs are read unsigned")
        return _identity
