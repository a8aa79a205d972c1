"""Band files of a scene, as the reference layout has them, and their metadata.

* Sentinel-2 L2A SAFE: ``GRANULE/<one dir>/IMG_DATA/R{10|20}m/<tile>_<datatake>_<band>_<res>m.jp2``
  (B02 B03 B04 B08 at 10 m; B05 B06 B07 B8A B11 B12 and SCL at 20 m) and ``MTD_MSIL2A.xml``.
  From processing baseline 04.00 the product metadata carries
  ``General_Info/Product_Image_Characteristics/BOA_ADD_OFFSET_VALUES_LIST/BOA_ADD_OFFSET``
  (``band_id`` as in ``Spectral_Information_List``, usually -1000): reflectance =
  (DN + offset) / 10000 (ESA, "Sentinel-2 Products Specification Document" PSD 14.9).
  Stored values are DN + offset, i.e. the scale of baselines before 04.00, for every
  baseline; the offset applied is recorded per observation in
  ``dias_catalogue.boa_add_offset``. DN 0 is nodata.
* STAC COG items (Earth Search, Planetary Computer; :class:`~.store.AssetProduct`): one
  GeoTIFF per band, named by the band code; the offset that makes their statistics equal to
  the JP2's comes from :func:`cbm_ops.harvest.assets.offset_for` (``raster:offset/scale``,
  ``earthsearch:boa_offset_applied``, or BOA_ADD_OFFSET of the item's ``MTD_MSIL2A.xml``).
* Sentinel-1 CARD-BS (BEAM-DIMAP): ``<ref>.data/Gamma0_VV.img`` + ``.hdr`` (ENVI float32,
  big-endian as SNAP writes it, linear power); band codes ``VVb``, ``VHb``.
* Sentinel-1 CARD-COH6: ``<ref>.tif`` with band 1 = VV, band 2 = VH coherence (0-1);
  band codes ``VVc``, ``VHc``.

Failures are :class:`SceneError` with a named status for ``scene_stages``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from lxml import etree

from ..config import S2_NATIVE_RES, STAGES, AoiConfig
from ..errors import SceneError
from .store import AssetProduct, ProductFiles

S2_BAND_IDS = ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B10", "B11", "B12")


@dataclass(frozen=True)
class BandFile:
    """One band to extract.

    Attributes
    ----------
    band : str
        Code stored in sigs/hists (``B04``, ``SCL``, ``VVb``, ``VHc``).
    rel : str
        Path relative to the product directory.
    index : int
        1-based band index in the file.
    offset : int
        Added to the statistics after masking (S2 ``BOA_ADD_OFFSET``), DN.
    nodata : float or None
        Value masked per pixel (the file's declared nodata overrides it when set).
    companions : tuple of str
        Files that must sit beside ``rel`` (the ENVI ``.hdr``).
    """

    band: str
    rel: str
    index: int = 1
    offset: int = 0
    nodata: float | None = None
    companions: tuple[str, ...] = ()


def _band_name(physical: str) -> str:
    """``B4`` -> ``B04``; ``B8A`` stays."""
    m = re.fullmatch(r"B(\d{1,2})(A?)", physical)
    if not m:
        return physical
    return f"B{int(m.group(1)):02d}{m.group(2)}" if not m.group(2) else f"B{int(m.group(1))}A"


def s2_offsets(xml: bytes) -> tuple[str | None, dict[str, int]]:
    """Processing baseline and BOA_ADD_OFFSET per band from ``MTD_MSIL2A.xml``.

    Returns
    -------
    (str or None, dict)
        Baseline (``"05.10"``) and ``{"B04": -1000, ...}``; empty dict when the product
        has no offset list (baselines before 04.00).

    Raises
    ------
    SceneError
        ``Bad metadata`` if the XML cannot be parsed, or a baseline >= 04.00 has no
        offsets.
    """
    try:
        root = etree.fromstring(xml, parser=etree.XMLParser(resolve_entities=False, no_network=True))
    except etree.XMLSyntaxError as exc:
        raise SceneError("Bad metadata", f"MTD_MSIL2A.xml: {exc}", retryable=False) from None
    base = root.xpath("string(//*[local-name()='PROCESSING_BASELINE'])").strip() or None
    ids = {el.get("bandId"): _band_name(el.get("physicalBand", ""))
           for el in root.xpath("//*[local-name()='Spectral_Information']")}
    offsets: dict[str, int] = {}
    for el in root.xpath("//*[local-name()='BOA_ADD_OFFSET']"):
        bid = el.get("band_id")
        name = ids.get(bid) or (S2_BAND_IDS[int(bid)] if bid and bid.isdigit() and int(bid) < 13 else None)
        if name is None:
            raise SceneError("Bad metadata", f"BOA_ADD_OFFSET for unknown band_id {bid!r}", retryable=False)
        offsets[name] = int(float(el.text))
    if base and base >= "04.00" and not offsets:
        raise SceneError("Bad metadata", f"baseline {base} product without BOA_ADD_OFFSET_VALUES_LIST",
                         retryable=False)
    return base, offsets


def band_files(prod: ProductFiles, cfg: AoiConfig, stage: str, card: str, reference: str,
               baseline: str | None) -> tuple[list[BandFile], dict[str, int]]:
    """The band files a stage reads, and the S2 offsets applied (for the record).

    Raises
    ------
    SceneError
        ``No file`` (retryable: the product may still be arriving) when a band or the
        S2 metadata is missing; ``Bad product`` when a band is ambiguous.
    """
    bands = cfg.bands.get(stage, ())
    if STAGES[stage][0] != card:
        raise SceneError("Wrong card", f"stage {stage} cannot read a {card!r} scene", retryable=False)
    if card == "s2" and isinstance(prod, AssetProduct):
        return _cog_files(prod, cfg, bands, baseline)
    if card == "s2":
        return _s2_files(prod, cfg, bands, baseline)
    if card == "bs":
        out = []
        for pol in bands:
            rel = _one(prod, f"*.data/Gamma0_{pol}.img", f"Gamma0_{pol}")
            out.append(BandFile(band=f"{pol}b", rel=rel, nodata=cfg.s1_nodata,
                                companions=(rel[:-4] + ".hdr",)))
        return out, {}
    rel = _one(prod, "*.tif", "CARD-COH6 GeoTIFF")
    return [BandFile(band=f"{pol}c", rel=rel, index={"VV": 1, "VH": 2}[pol], nodata=cfg.s1_nodata)
            for pol in bands], {}


def _one(prod: ProductFiles, pattern: str, what: str) -> str:
    hits = prod.glob(pattern)
    if not hits:
        raise SceneError("No file", f"{prod.name}: no {what} ({pattern})", retryable=True)
    if len(hits) > 1:
        raise SceneError("Bad product", f"{prod.name}: {len(hits)} files match {pattern}: {hits[:3]}",
                         retryable=False)
    return hits[0]


def _s2_files(prod: ProductFiles, cfg: AoiConfig, bands: tuple[str, ...], baseline: str | None
              ) -> tuple[list[BandFile], dict[str, int]]:
    offsets: dict[str, int] = {}
    needs_offset = any(b != "SCL" for b in bands)
    if needs_offset:
        mtd = prod.glob("MTD_MSIL2A.xml")
        if mtd:
            with open(prod.local(mtd[0]), "rb") as f:
                _, offsets = s2_offsets(f.read())
        elif baseline is None or baseline >= "04.00":
            raise SceneError("No file", f"{prod.name}: no MTD_MSIL2A.xml to read BOA_ADD_OFFSET from "
                             f"(baseline {baseline})", retryable=True)
    out = []
    for b in bands:
        res = S2_NATIVE_RES[b]
        rel = _one(prod, f"GRANULE/*/IMG_DATA/R{res}m/*_{b}_{res}m.jp2", f"{b} {res} m band")
        off = 0 if b == "SCL" else offsets.get(b, 0)
        out.append(BandFile(band=b, rel=rel, offset=off, nodata=cfg.s2_nodata))
    applied = {b.band: b.offset for b in out if b.band != "SCL"}
    return out, applied


def _cog_files(prod: AssetProduct, cfg: AoiConfig, bands: tuple[str, ...], baseline: str | None
               ) -> tuple[list[BandFile], dict[str, int]]:
    """The band assets of a STAC COG item and the offset of each (:func:`offset_for`).

    The item's ``MTD_MSIL2A.xml`` is read only when a band has no ``raster`` offset and
    scale (Planetary Computer) and the item links it.

    Raises
    ------
    SceneError
        ``No file`` (retryable) when the item has no asset for a band.
    """
    from ..harvest.assets import offset_for

    missing = [b for b in bands if not isinstance(prod.assets.get(b), dict)]
    if missing:
        raise SceneError("No file", f"{prod.name}: the STAC item has no asset for {', '.join(missing)}",
                         retryable=True)
    mtd: dict[str, int] | None = None
    needs_mtd = any(b != "SCL" and prod.assets[b].get("offset") is None and not prod.item.get("boa_offset_applied")
                    for b in bands)
    if needs_mtd and prod.glob(AssetProduct.METADATA):
        try:
            with open(prod.local(AssetProduct.METADATA), "rb") as f:
                _, mtd = s2_offsets(f.read())
        except FileNotFoundError as exc:
            raise SceneError("No file", f"{prod.name}: {exc}", retryable=True) from None
    out = []
    for b in bands:
        entry = prod.assets[b]
        off, rule = offset_for(b, entry, prod.item, baseline, mtd, prod.boa_offset_applied)
        nodata = entry.get("nodata")
        out.append(BandFile(band=b, rel=b, offset=off, nodata=cfg.s2_nodata if nodata is None else nodata))
    applied = {b.band: b.offset for b in out if b.band != "SCL"}
    return out, applied
