#!/usr/bin/env python3
"""Build ``include/sample/``: real Sentinel data repackaged in the CREODIAS ``/eodata`` layout.

Run with the project venv (``make sample``)::

    .venv/bin/python scripts/build_sample.py [--data ../shared/data] [--out include/sample]

The output directory is deleted and rebuilt from scratch on every run; everything in it,
this README included, is generated, and every byte depends only on the input data (fixed
timestamps, no ``now()``), so two runs give identical trees.

Input: ``worldcereal-cib-flanders-patches`` (patch ``00002806639B424A``, West Flanders):
per-acquisition Sentinel-2 L2A GeoTIFFs (GEE ``COPERNICUS/S2_SR``), Sentinel-1 GRD
ascending sigma0 in dB (GEE ``COPERNICUS/S1_GRD``) and the parcels GeoPackage; plus the
10 LPIS parcels of ``befl-mechelen-markers`` (copied unchanged).

Nothing is invented in pixel values or geometries: the S2 bands are converted GeoTIFF ->
lossless JPEG2000 (bit-identical), the S1 bands dB -> linear power (NaN -> 0) and written
as big-endian ENVI like SNAP does. What the source does not carry (product names: platform,
orbits, processing baseline, discriminator, datatake ids) is reconstructed as documented
in the generated README and in :data:`RECONSTRUCTION_NOTES` below; every product's
reconstructed fields are listed in ``include/sample/products.csv``.

Orbit reconstruction (see :class:`OrbitModel`): Sentinel-2 repeats its ground track after
143 orbits in 10 days, Sentinel-1 after 175 orbits in 12 days; the two satellites of each
pair share one orbital plane, 180 degrees apart. From a real product of known absolute
orbit and sensing time (the anchors, read from ``tests/fixtures/catalogue`` or quoted
below with their source) the script computes for every sensing time and platform the
fractional orbit count at which that platform crosses the patch's latitude; exactly one
platform is at the patch then (residual ~0), the other is half an orbit away, on the
night side of the Earth. The relative orbit follows from the absolute one with the
per-platform offset that reproduces every anchor.
"""

# ruff: noqa: E501  (the README template below has long Markdown table rows)
from __future__ import annotations

import argparse
import csv
import datetime as dt
import hashlib
import io
import json
import math
import os
import re
import shutil
import sys
import uuid
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

# Before GDAL/rasterio are imported: no .aux.xml side-car files, fixed GeoPackage timestamps.
os.environ["GDAL_PAM_ENABLED"] = "NO"
os.environ["OGR_CURRENT_DATE"] = "2023-03-30T00:00:00.000Z"   # upstream commit date of the data

import numpy as np  # noqa: E402
import rasterio  # noqa: E402
from osgeo import gdal, ogr, osr  # noqa: E402
from pyproj import CRS, Transformer  # noqa: E402

gdal.UseExceptions()
ogr.UseExceptions()
osr.UseExceptions()

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data"
DEFAULT_OUT = REPO / "include" / "sample"
FIXTURES = REPO / "tests" / "fixtures" / "catalogue"

PATCH = "00002806639B424A"
SRC_SET = "worldcereal-cib-flanders-patches"
MECHELEN_SET = "befl-mechelen-markers"
UPSTREAM = ("GitHub WorldCereal/worldcereal-classification, commit "
            "5db1e24d918f99e5b2471b826fbcb8fd2afea252 (2023-03-30), "
            "tests/worldcerealtests/testresources/worldcerealtraining/00002806639B424A/*.nc "
            "(deleted again in 7e47e955)")
TILE = "31UDS"
EPSG = 32631
# MGRS tile T31UDS in EPSG:32631: upper-left corner and size (Sentinel-2 tiling grid).
TILE_UL = (499980.0, 5700000.0)
TILE_SIZE = 109800.0
PATCH_LAT = 50.8160          # latitude of the patch centre (3.0238 E, 50.8160 N)

S2_BANDS_10 = ("B02", "B03", "B04", "B08")
S2_BANDS_20 = ("B05", "B06", "B07", "B8A", "B11", "B12", "SCL")
S2_PHYSICAL = ("B1", "B2", "B3", "B4", "B5", "B6", "B7", "B8", "B8A", "B9", "B10", "B11", "B12")
S2_RESOLUTION = (60, 10, 10, 10, 20, 20, 20, 10, 20, 60, 60, 20, 20)
# Lossless; georeferencing in a GeoJP2 box only (ESA's files carry a GMLJP2 box instead, which
# GDAL reads the same way but which adds ~1.6 KB to each of the 1298 small files).
JP2_OPTIONS = ["QUALITY=100", "REVERSIBLE=YES", "YCBCR420=NO", "GeoJP2=YES", "GMLJP2=NO"]

# Sentinel-2 L2A processing baseline of ESA's Euro-Mediterranean L2A production by sensing
# date (first day, baseline). Pilot production (from sensing date 2017-03-28) used the L1C
# baseline (02.05; 02.06 from 2017-10-23, ESA processing-baseline table); operational
# L2A started 2018-03-26 with 02.07 (ESA news 2018-03-20). The later switch days are
# bracketed by real product names (see README) but not known to the day.
S2_BASELINES = (
    (dt.date(2017, 3, 28), "02.05"),
    (dt.date(2017, 10, 23), "02.06"),
    (dt.date(2018, 3, 26), "02.07"),
    (dt.date(2018, 5, 23), "02.08"),
    (dt.date(2018, 10, 8), "02.09"),
    (dt.date(2018, 11, 6), "02.10"),
)
S2_DISCRIMINATOR_TIME = "T120000"     # reconstructed product discriminator: sensing date + 12:00:00
S1_SLICE_SECONDS = 25                 # reconstructed stop time: start + 25 s (IW GRD slice length)
S1_FOOTPRINT_BUFFER_M = 10000.0       # S1 catalogue footprint: patch extent + 10 km

# Relative orbits the reconstruction must give (asserted): see the README for why the
# Sentinel-1 pair is 59/161 and not 88/161 as the source's SOURCE.md says.
EXPECTED_S2_REL = {51, 94}
EXPECTED_S1_REL = {59, 161}


# --------------------------------------------------------------------------- orbits
def parse_utc(value: str) -> dt.datetime:
    """ISO time (``Z`` or offset, any fraction) as naive UTC."""
    s = value.strip().replace("Z", "+00:00")
    if "." in s:
        head, frac = s.split(".", 1)
        digits = "".join(ch for ch in frac if ch.isdigit())
        s = f"{head}.{digits[:6]}{frac[len(digits):]}"
    t = dt.datetime.fromisoformat(s)
    if t.tzinfo is not None:
        t = t.astimezone(dt.UTC).replace(tzinfo=None)
    return t


def arg_of_latitude(lat: float, inclination: float, ascending: bool) -> float:
    """Argument of latitude (degrees from the ascending node) of a circular orbit at ``lat``."""
    s = math.sin(math.radians(lat)) / math.sin(math.radians(inclination))
    u = math.degrees(math.asin(max(-1.0, min(1.0, s))))
    return u if ascending else 180.0 - u


@dataclass(frozen=True)
class Anchor:
    """A real product: platform, absolute/relative orbit at a known time (and place)."""

    platform: str
    time: dt.datetime
    absolute: int
    relative: int | None
    ascending: bool
    lat: float | None          # sub-satellite latitude at ``time``, when known
    source: str


class OrbitModel:
    """Absolute orbit of a sun-synchronous repeat orbit from a sensing time.

    ``x(p, t)`` is platform ``p``'s orbit count in "patch-phase" units: an integer ``N``
    exactly when ``p`` crosses the patch latitude (in the patch's pass direction) during
    absolute orbit ``N`` (orbits are counted from the ascending node). It advances by one
    per nodal period ``P = repeat_days / repeat_orbits``.
    """

    def __init__(self, mission: str, repeat_days: int, repeat_orbits: int, inclination: float,
                 patch_ascending: bool):
        self.mission = mission
        self.period = dt.timedelta(days=repeat_days) / repeat_orbits
        self.repeat_orbits = repeat_orbits
        self.inclination = inclination
        self.patch_ascending = patch_ascending
        self.u_patch = arg_of_latitude(PATCH_LAT, inclination, patch_ascending)
        self.refs: dict[str, tuple[dt.datetime, float]] = {}
        self.rel_offset: dict[str, int] = {}
        self.log: list[str] = []

    def x(self, platform: str, t: dt.datetime) -> float:
        t0, x0 = self.refs[platform]
        return x0 + (t - t0) / self.period

    def set_ref_from_anchor(self, a: Anchor) -> None:
        """Reference from an anchor whose latitude is known."""
        u = arg_of_latitude(a.lat, self.inclination, a.ascending)
        self.refs[a.platform] = (a.time, a.absolute + (u - self.u_patch) / 360.0)
        self.log.append(f"{a.platform} reference: orbit {a.absolute} at {a.time:%Y-%m-%dT%H:%M:%S} "
                        f"(lat {a.lat:.2f}, u {u:.1f} deg vs patch u {self.u_patch:.1f} deg) - {a.source}")

    def derive_rel_offset(self, anchors: list[Anchor]) -> None:
        """Per platform the k with ``rel = (abs + k) mod N + 1`` for all anchors (asserted)."""
        for p in sorted({a.platform for a in anchors}):
            mine = [a for a in self.dedupe(anchors) if a.platform == p and a.relative is not None]
            k = (mine[0].relative - 1 - mine[0].absolute) % self.repeat_orbits
            for a in mine:
                got = (a.absolute + k) % self.repeat_orbits + 1
                assert got == a.relative, f"{p}: relative-orbit offset {k} fails anchor {a}"
            self.rel_offset[p] = k
            signed = k if k <= self.repeat_orbits // 2 else k - self.repeat_orbits
            self.log.append(f"{p}: relative orbit = (absolute {'+' if signed >= 0 else '-'} {abs(signed)}) "
                            f"mod {self.repeat_orbits} + 1, reproduces all {len(mine)} anchors")

    def relative(self, platform: str, absolute: int) -> int:
        return (absolute + self.rel_offset[platform]) % self.repeat_orbits + 1

    def check_anchor(self, a: Anchor, tol: float) -> float:
        """Residual of an anchor against the model (its position vs its stated orbit)."""
        x = self.x(a.platform, a.time)
        if a.lat is not None:
            u = arg_of_latitude(a.lat, self.inclination, a.ascending)
            x -= (u - self.u_patch) / 360.0
        res = x - a.absolute
        assert abs(res) < tol, f"{self.mission} anchor {a} off by {res:.3f} orbits (> {tol})"
        return res

    def dedupe(self, anchors: list[Anchor]) -> list[Anchor]:
        seen, out = set(), []
        for a in anchors:
            key = (a.platform, a.absolute, a.time.replace(microsecond=0))
            if key not in seen:
                seen.add(key)
                out.append(a)
        return out

    def assign(self, t: dt.datetime) -> tuple[str, int, int, float, float]:
        """(platform, absolute orbit, relative orbit, residual, other platform's residual)."""
        res = {}
        for p in sorted(self.refs):
            x = self.x(p, t)
            res[p] = (round(x), x - round(x))
        near = [p for p, (_, r) in res.items() if abs(r) < 0.15]
        far = [p for p, (_, r) in res.items() if abs(r) > 0.35]
        assert len(near) == 1 and len(far) == len(res) - 1, \
            f"{self.mission} {t}: cannot tell which platform was over the patch: {res}"
        p = near[0]
        other = next(abs(r) for q, (_, r) in res.items() if q != p)
        return p, res[p][0], self.relative(p, res[p][0]), res[p][1], other


def s2_model() -> tuple[OrbitModel, list[str]]:
    """Sentinel-2 orbit model from real anchors; returns the model and its check log."""
    m = OrbitModel("Sentinel-2", 10, 143, 98.62, patch_ascending=False)
    anchors: list[Anchor] = []
    stac = json.loads((FIXTURES / "site2-2020_jun_jul-35MNM.geojson").read_text())
    for f in stac["features"]:
        p = f["properties"]
        mm = re.fullmatch(r"G(S2[AB])_(\d{8}T\d{6})_(\d{6})_N(\d\d\.\d\d)", p["s2:datatake_id"])
        anchors.append(Anchor(mm.group(1), dt.datetime.strptime(mm.group(2), "%Y%m%dT%H%M%S"),
                              int(mm.group(3)), int(p["sat:relative_orbit"]), False, None,
                              f"tests/fixtures/catalogue/site2-2020_jun_jul-35MNM.geojson {p['s2:product_uri']}"))
    resto = json.loads((FIXTURES / "creodias_finder_resto_Sentinel2_L2A_search.json").read_text())
    for f in resto["features"]:
        p = f["properties"]
        mm = re.fullmatch(r"G(S2[AB])_(\d{8}T\d{6})_(\d{6})_N(\d\d\.\d\d)", p["missionTakeId"])
        anchors.append(Anchor(mm.group(1), dt.datetime.strptime(mm.group(2), "%Y%m%dT%H%M%S"),
                              int(mm.group(3)), int(p["relativeOrbitNumber"]), False, None,
                              f"tests/fixtures/catalogue/creodias_finder_resto_Sentinel2_L2A_search.json {p['title']}"))
    # A real T31UDS granule with its own sensing time (the granule directory name):
    # S2A_MSIL1C_20190419T105621_N0207_R094_T31UDS_20190419T130656.SAFE/GRANULE/
    # L1C_T31UDS_A019968_20190419T110407 (GitHub hygeos/eoread, tests/test_raster.py).
    uds = Anchor("S2A", dt.datetime(2019, 4, 19, 11, 4, 7), 19968, 94, False, PATCH_LAT,
                 "S2A_MSIL1C_20190419T105621_N0207_R094_T31UDS_20190419T130656 granule "
                 "L1C_T31UDS_A019968_20190419T110407 (hygeos/eoread tests/test_raster.py)")
    anchors.append(uds)
    m.derive_rel_offset(anchors)
    m.set_ref_from_anchor(uds)
    # S2B: the fixture's S2A and S2B datatakes of relative orbit 78 start at the same point
    # of the orbit (08:06:11 / 08:06:09 UTC, 5 days apart); the S2A one's phase against the
    # T31UDS anchor carries over to S2B, whose absolute orbit the datatake id gives.
    a35 = next(a for a in anchors if a.platform == "S2A" and a.relative == 78)
    b35 = next(a for a in anchors if a.platform == "S2B" and a.relative == 78)
    phi = m.x("S2A", a35.time) - a35.absolute
    assert abs(phi) < 0.2, f"S2A datatake start too far from the patch phase ({phi:.3f})"
    m.refs["S2B"] = (b35.time, b35.absolute + phi)
    m.log.append(f"S2B reference: orbit {b35.absolute} at {b35.time:%Y-%m-%dT%H:%M:%S} (datatake start), "
                 f"phase {phi:+.3f} orbit taken from the S2A datatake {a35.absolute} of the same "
                 f"relative orbit at {a35.time:%Y-%m-%dT%H:%M:%S}")
    # Every anchor's datatake start lies in the descending (day-side) half of its orbit,
    # i.e. within +-0.2 orbit of the patch crossing: check the model against all of them.
    summarise_checks(m, anchors, 0.2)
    return m, m.log


def s1_model() -> tuple[OrbitModel, list[str]]:
    """Sentinel-1 orbit model from real anchors; returns the model and its check log."""
    m = OrbitModel("Sentinel-1", 12, 175, 98.18, patch_ascending=True)
    anchors: list[Anchor] = []
    cdse = json.loads((FIXTURES / "3c893698_query_cdse_results.json").read_text())
    for f in cdse["features"]:
        p = f["properties"]
        if p["platform"] != "S1A":
            continue
        t0, t1 = parse_utc(p["startDate"]), parse_utc(p["completionDate"])
        anchors.append(Anchor(p["platform"], t0 + (t1 - t0) / 2, int(p["orbitNumber"]),
                              int(p["relativeOrbitNumber"]), p["orbitDirection"].upper() == "ASCENDING",
                              float(p["centroid"]["coordinates"][1]),
                              f"tests/fixtures/catalogue/3c893698_query_cdse_results.json {p['title']}"))
    # A real CREODIAS CARD-BS product of S1B (quoted as a path in public cbm code):
    # /eodata/Sentinel-1/SAR/CARD-BS/2019/03/01/S1B_IW_GRDH_1SDV_20190301T172436_20190301T172501_015164_01C5BF_40F5_CARD_BS
    s1b = Anchor("S1B", dt.datetime(2019, 3, 1, 17, 24, 36), 15164, None, True, None,
                 "S1B_IW_GRDH_1SDV_20190301T172436_20190301T172501_015164_01C5BF_40F5_CARD_BS")
    # A real GEE COPERNICUS/S1_GRD image over Belgium, ascending, relative orbit 88:
    # S1A_IW_GRDH_1SDV_20180405T172429_20180405T172454_021335_024B73_DBA1, footprint
    # 4.0-5.3 E around 50.4-51.6 N (its western, near-range edge is at ~4.1 E at 51.0 N).
    gee88 = Anchor("S1A", dt.datetime(2018, 4, 5, 17, 24, 41), 21335, 88, True, 51.0,
                   "GEE COPERNICUS/S1_GRD S1A_IW_GRDH_1SDV_20180405T172429_20180405T172454_021335_024B73_DBA1")
    m.log.append("S1A: relative orbit formula of the ESA user guide (abs - 73) mod 175 + 1; "
                 "S1B: (abs - 27) mod 175 + 1")
    m.rel_offset = {"S1A": (-73) % 175, "S1B": (-27) % 175}
    for a in anchors + [gee88]:
        assert m.relative(a.platform, a.absolute) == a.relative, f"formula fails anchor {a}"
    m.log.append(f"S1A formula reproduces all {len(anchors) + 1} S1A anchor records "
                 f"({len({a.absolute for a in anchors + [gee88]})} distinct absolute orbits, relative orbits "
                 f"{sorted({a.relative for a in anchors + [gee88]})})")
    ref = next(a for a in anchors if "_GRDH_" in a.source and "_COG" not in a.source)
    m.set_ref_from_anchor(ref)
    summarise_checks(m, anchors + [gee88], 0.06)
    # S1B flies in the same plane half an orbit from S1A: S1A's patch phase + 0.5 is S1B's.
    y = m.x("S1A", s1b.time) + 0.5
    f = y - round(y)
    assert abs(f) < 0.1, f"S1B anchor not near the patch phase ({f:.3f}): no ascending pass at mid-latitude?"
    m.refs["S1B"] = (s1b.time, s1b.absolute + f)
    m.log.append(f"S1B reference: orbit {s1b.absolute} (rel {m.relative('S1B', s1b.absolute)}) at "
                 f"{s1b.time:%Y-%m-%dT%H:%M:%S}; S1A phase + 0.5 puts it {f:+.3f} orbit from the patch "
                 f"latitude, i.e. an ascending pass at about the patch latitude - {s1b.source}")
    return m, m.log


def summarise_checks(m: OrbitModel, anchors: list[Anchor], tol: float) -> None:
    """Check every anchor against the model; one log line per anchor source."""
    groups: dict[str, list[tuple[Anchor, float]]] = {}
    for a in m.dedupe(anchors):
        key = a.source.split(" ")[0] if a.source.startswith("tests/") else a.source
        groups.setdefault(key, []).append((a, m.check_anchor(a, tol)))
    for key, items in groups.items():
        plats = Counter(a.platform for a, _ in items)
        rels = sorted({a.relative for a, _ in items if a.relative is not None})
        res = [r for _, r in items]
        m.log.append(f"check {len(items)} anchor(s) of {key}: "
                     + ", ".join(f"{p} x{n}" for p, n in sorted(plats.items()))
                     + f", relative orbit(s) {rels}, absolute orbits {min(a.absolute for a, _ in items)}"
                     f"-{max(a.absolute for a, _ in items)}: residual {min(res):+.3f} .. {max(res):+.3f} "
                     f"orbit (tolerance {tol})")


# --------------------------------------------------------------------------- helpers
def s2_baseline(day: dt.date) -> str:
    base = None
    for first, b in S2_BASELINES:
        if day >= first:
            base = b
    assert base is not None, f"no L2A baseline known for {day}"
    return base


def densified_lonlat(x0: float, y0: float, x1: float, y1: float, n: int) -> list[list[float]]:
    """Closed ring (counter-clockwise in lon/lat) of an EPSG:32631 box, n points per edge."""
    tr = Transformer.from_crs(EPSG, 4326, always_xy=True)
    pts = []
    for i in range(n):                                   # west edge, north -> south
        pts.append((x0, y1 - (y1 - y0) * i / n))
    for i in range(n):                                   # south edge, west -> east
        pts.append((x0 + (x1 - x0) * i / n, y0))
    for i in range(n):                                   # east edge, south -> north
        pts.append((x1, y0 + (y1 - y0) * i / n))
    for i in range(n):                                   # north edge, east -> west
        pts.append((x1 - (x1 - x0) * i / n, y1))
    pts.append(pts[0])
    return [[round(v, 7) for v in tr.transform(x, y)] for x, y in pts]


def iso_z(t: dt.datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%S") + "Z"


def feature_id(title: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"cbm-airflow/include/sample/{title}"))


def read_tif(path: Path) -> tuple[np.ndarray, rasterio.Affine, int, dict]:
    with rasterio.open(path) as ds:
        return ds.read(1), ds.transform, ds.crs.to_epsg(), ds.tags()


def sizeof(n: float) -> str:
    for unit in ("B", "KB", "MB"):
        if n < 1024 or unit == "MB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} MB"


# --------------------------------------------------------------------------- parcels
def build_parcels(src_gpkg: Path, out: Path) -> list[dict]:
    """The real LPIS parcel (FID 1) and the 19 polygonised label regions of the patch."""
    src = ogr.Open(str(src_gpkg))
    rows = []
    lyr = src.GetLayerByName("lpis_sample_polygons")
    real = [f for f in lyr if f.GetField("has_imagery_here")]
    assert len(real) == 1 and real[0].GetField("location_id") == PATCH, "expected one parcel with imagery"
    f = real[0]
    rows.append({"name": "lpis_maize_2018", "kind": "LPIS parcel", "ct": int(f.GetField("CT")),
                 "ct_name": f.GetField("CT_name"), "geom": f.GetGeometryRef().Clone(),
                 "src": "lpis_sample_polygons location_id=" + f.GetField("location_id")})
    lyr = src.GetLayerByName("lpis_raster_polygonised")
    regions = sorted((f for f in lyr if f.GetField("patch_id") == PATCH), key=lambda f: f.GetField("region_id"))
    assert len(regions) == 19, len(regions)
    for i, f in enumerate(regions, 1):
        rows.append({"name": f"region_{i:02d}", "kind": "polygonised rasterised LPIS region",
                     "ct": int(f.GetField("CT")), "ct_name": f.GetField("CT_name"),
                     "geom": f.GetGeometryRef().Clone(),
                     "src": f"lpis_raster_polygonised region_id={f.GetField('region_id')}"})
    for r in rows:
        assert r["geom"].GetGeometryType() == ogr.wkbPolygon and r["geom"].IsValid(), r["name"]
        r["area_m2"] = round(r["geom"].GetArea(), 2)
    path = out / "parcels" / f"flanders_{PATCH}.gpkg"
    path.parent.mkdir(parents=True, exist_ok=True)
    ds = ogr.GetDriverByName("GPKG").CreateDataSource(str(path))
    srs = osr.SpatialReference()
    srs.ImportFromEPSG(EPSG)
    layer = ds.CreateLayer("parcels", srs, ogr.wkbPolygon, options=["FID=fid", "GEOMETRY_NAME=geom"])
    for name, ftype in (("name", ogr.OFTString), ("kind", ogr.OFTString), ("ct", ogr.OFTInteger),
                        ("ct_name", ogr.OFTString), ("area_m2", ogr.OFTReal)):
        fd = ogr.FieldDefn(name, ftype)
        if name == "name":
            fd.SetNullable(False)
            fd.SetUnique(True)
        layer.CreateField(fd)
    for fid, r in enumerate(rows, 1):
        feat = ogr.Feature(layer.GetLayerDefn())
        feat.SetFID(fid)
        for k in ("name", "kind", "ct", "ct_name", "area_m2"):
            feat.SetField(k, r[k])
        feat.SetGeometry(r["geom"])
        layer.CreateFeature(feat)
    ds = None
    return rows


# --------------------------------------------------------------------------- Sentinel-2
def write_jp2(arr: np.ndarray, transform, path: Path) -> None:
    """Lossless JPEG2000 (GDAL JP2OpenJPEG) with GeoJP2 georeferencing, no side-car."""
    gtype = {np.dtype("uint16"): gdal.GDT_UInt16, np.dtype("uint8"): gdal.GDT_Byte}[arr.dtype]
    mem = gdal.GetDriverByName("MEM").Create("", arr.shape[1], arr.shape[0], 1, gtype)
    mem.SetGeoTransform(transform.to_gdal())
    srs = osr.SpatialReference()
    srs.ImportFromEPSG(EPSG)
    mem.SetProjection(srs.ExportToWkt())
    mem.GetRasterBand(1).WriteArray(arr)
    dst = gdal.GetDriverByName("JP2OpenJPEG").CreateCopy(str(path), mem, options=JP2_OPTIONS)
    dst.FlushCache()
    del dst, mem                     # closes the files


def mtd_xml(p: dict) -> str:
    spectral = "\n".join(
        f'        <Spectral_Information bandId="{i}" physicalBand="{b}">\n'
        f"          <RESOLUTION>{r}</RESOLUTION>\n"
        f"        </Spectral_Information>"
        for i, (b, r) in enumerate(zip(S2_PHYSICAL, S2_RESOLUTION, strict=True)))
    files = "\n".join(f"              <IMAGE_FILE>{rel[: -len('.jp2')]}</IMAGE_FILE>" for rel in p["files"])
    t = p["time"].strftime("%Y-%m-%dT%H:%M:%S") + ".000Z"
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<!-- Reduced reconstruction written by cbm-airflow's scripts/build_sample.py, NOT an ESA file.
     Pixel data: GEE COPERNICUS/S2_SR (ESA L2A) clipped to a 640 m patch of tile T{TILE}.
     Reconstructed (see include/sample/README.md): platform, absolute and relative orbit
     (orbit arithmetic), processing baseline (ESA's L2A baseline at that sensing date),
     product discriminator / GENERATION_TIME (sensing date + 12:00:00), datatake sensing
     start (= the granule sensing time of the source, SENSING_TIME_UTC, which stands in for it).
     No BOA_ADD_OFFSET_VALUES_LIST: baselines before 04.00 have no offset. -->
<n1:Level-2A_User_Product xmlns:n1="https://psd-14.sentinel2.eo.esa.int/PSD/User_Product_Level-2A.xsd">
  <n1:General_Info>
    <Product_Info>
      <PRODUCT_START_TIME>{t}</PRODUCT_START_TIME>
      <PRODUCT_STOP_TIME>{t}</PRODUCT_STOP_TIME>
      <PRODUCT_URI>{p['name']}.SAFE</PRODUCT_URI>
      <PROCESSING_LEVEL>Level-2A</PROCESSING_LEVEL>
      <PRODUCT_TYPE>S2MSI2A</PRODUCT_TYPE>
      <PROCESSING_BASELINE>{p['baseline']}</PROCESSING_BASELINE>
      <GENERATION_TIME>{p['time']:%Y-%m-%d}T12:00:00.000000Z</GENERATION_TIME>
      <Datatake datatakeIdentifier="{p['datatake']}">
        <SPACECRAFT_NAME>Sentinel-2{p['platform'][-1]}</SPACECRAFT_NAME>
        <DATATAKE_TYPE>INS-NOBS</DATATAKE_TYPE>
        <DATATAKE_SENSING_START>{t}</DATATAKE_SENSING_START>
        <SENSING_ORBIT_NUMBER>{p['relative']}</SENSING_ORBIT_NUMBER>
        <SENSING_ORBIT_DIRECTION>DESCENDING</SENSING_ORBIT_DIRECTION>
      </Datatake>
      <Product_Organisation>
        <Granule_List>
          <Granule imageFormat="JPEG2000">
{files}
          </Granule>
        </Granule_List>
      </Product_Organisation>
    </Product_Info>
    <Product_Image_Characteristics>
      <Special_Values>
        <SPECIAL_VALUE_TEXT>NODATA</SPECIAL_VALUE_TEXT>
        <SPECIAL_VALUE_INDEX>0</SPECIAL_VALUE_INDEX>
      </Special_Values>
      <Special_Values>
        <SPECIAL_VALUE_TEXT>SATURATED</SPECIAL_VALUE_TEXT>
        <SPECIAL_VALUE_INDEX>65535</SPECIAL_VALUE_INDEX>
      </Special_Values>
      <QUANTIFICATION_VALUES_LIST>
        <BOA_QUANTIFICATION_VALUE unit="none">10000</BOA_QUANTIFICATION_VALUE>
        <AOT_QUANTIFICATION_VALUE unit="none">1000.0</AOT_QUANTIFICATION_VALUE>
        <WVP_QUANTIFICATION_VALUE unit="cm">1000.0</WVP_QUANTIFICATION_VALUE>
      </QUANTIFICATION_VALUES_LIST>
      <Spectral_Information_List>
{spectral}
      </Spectral_Information_List>
    </Product_Image_Characteristics>
  </n1:General_Info>
</n1:Level-2A_User_Product>
"""


def build_s2(src: Path, out: Path, model: OrbitModel) -> list[dict]:
    products = []
    for d in sorted(p for p in (src / "s2").iterdir() if p.is_dir()):
        ts = d.name
        tags = read_tif(d / f"S2L2A_{PATCH}_{ts}_B02.tif")[3]
        t = dt.datetime.strptime(tags["SENSING_TIME_UTC"], "%Y-%m-%dT%H:%M:%S")
        assert t == dt.datetime.strptime(ts, "%Y-%m-%dT%H%M%S"), (ts, tags)
        plat, absorb, rel, res, other = model.assign(t)
        base = s2_baseline(t.date())
        tt = f"{t:%Y%m%dT%H%M%S}"
        name = f"{plat}_MSIL2A_{tt}_N{base.replace('.', '')}_R{rel:03d}_T{TILE}_{t:%Y%m%d}{S2_DISCRIMINATOR_TIME}"
        ident = f"Sentinel-2/MSI/L2A/{t:%Y/%m/%d}/{name}.SAFE"
        safe = out / "eodata" / ident
        gran = f"GRANULE/L2A_T{TILE}_A{absorb:06d}_{tt}"
        files, cloud = [], None
        for band in S2_BANDS_10 + S2_BANDS_20:
            res_m = 10 if band in S2_BANDS_10 else 20
            arr, transform, epsg, btags = read_tif(d / f"S2L2A_{PATCH}_{ts}_{band}.tif")
            assert epsg == EPSG and btags["SENSING_TIME_UTC"] == tags["SENSING_TIME_UTC"], (ts, band)
            assert transform.a == res_m and arr.shape == ((64, 64) if res_m == 10 else (32, 32)), (ts, band)
            rel_path = f"{gran}/IMG_DATA/R{res_m}m/T{TILE}_{tt}_{band}_{res_m}m.jp2"
            (safe / rel_path).parent.mkdir(parents=True, exist_ok=True)
            write_jp2(arr, transform, safe / rel_path)
            files.append(rel_path)
            if band == "SCL":
                valid = arr != 0
                cloud = round(100.0 * float(np.isin(arr, (8, 9, 10)).sum()) / max(int(valid.sum()), 1), 4)
        p = {"kind": "S2", "source": d, "source_ts": ts, "time": t, "platform": plat, "absolute": absorb,
             "relative": rel, "residual": res, "other_residual": other, "baseline": base, "name": name,
             "identifier": "/eodata/" + ident, "cloud": cloud, "files": files,
             "datatake": f"G{plat}_{tt}_{absorb:06d}_N{base}"}
        (safe / "MTD_MSIL2A.xml").write_text(mtd_xml(p), encoding="utf-8")
        products.append(p)
    return products


# --------------------------------------------------------------------------- Sentinel-1
WKT_32631 = " ".join(CRS.from_epsg(EPSG).to_wkt("WKT1_GDAL").split())


def envi_header(pol: str, width: int, height: int, transform) -> str:
    """ENVI header in the order and number format of SNAP's EnviHeader writer."""
    assert transform.b == 0 and transform.d == 0
    return ("ENVI\n"
            f"description = {{Sentinel-1 sigma0 {pol} from GEE COPERNICUS/S1_GRD in a CARD-BS Gamma0_{pol} "
            "slot (cbm-airflow sample, see README) - Unit: linear}\n"
            f"samples = {width}\n"
            f"lines = {height}\n"
            "bands = 1\n"
            "header offset = 0\n"
            "file type = ENVI Standard\n"
            "data type = 4\n"
            "interleave = bsq\n"
            "byte order = 1\n"
            f"band names = {{ Gamma0_{pol} }}\n"
            # Reference pixel (1,1) = upper-left corner of the upper-left pixel (ENVI convention).
            f"map info = {{UTM,1.0,1.0,{float(transform.c)!r},{float(transform.f)!r},"
            f"{float(transform.a)!r},{float(-transform.e)!r},{EPSG % 100},North,WGS84,units=Meters}}\n"
            f"coordinate system string = {{{WKT_32631}}}\n"
            "data gain values = {1.0}\n"
            "data offset values = {0.0}\n")


def build_s1(src: Path, out: Path, model: OrbitModel) -> list[dict]:
    products = []
    for d in sorted(p for p in (src / "s1").iterdir() if p.is_dir()):
        ts = d.name
        bands = {}
        for pol in ("VV", "VH"):
            arr, transform, epsg, tags = read_tif(d / f"S1GRDasc_{PATCH}_{ts}_{pol}_db.tif")
            assert epsg == EPSG and tags["ORBIT_DIRECTION"] == "ASCENDING" and tags["UNITS"] == "dB", (ts, tags)
            bands[pol] = (arr, transform, tags)
        t = dt.datetime.strptime(bands["VV"][2]["ACQUISITION_TIME_UTC"], "%Y-%m-%dT%H:%M:%S")
        assert t == dt.datetime.strptime(ts, "%Y-%m-%dT%H%M%S"), (ts, bands["VV"][2])
        assert bands["VH"][2]["ACQUISITION_TIME_UTC"] == bands["VV"][2]["ACQUISITION_TIME_UTC"], ts
        assert bands["VH"][1] == bands["VV"][1] and bands["VV"][1].a == 20.0, ts
        plat, absorb, rel, res, other = model.assign(t)
        stop = t + dt.timedelta(seconds=S1_SLICE_SECONDS)
        uid = hashlib.sha1(f"{plat}_{t:%Y%m%dT%H%M%S}".encode(), usedforsecurity=False).hexdigest()[:4].upper()
        ref = (f"{plat}_IW_GRDH_1SDV_{t:%Y%m%dT%H%M%S}_{stop:%Y%m%dT%H%M%S}_{absorb:06d}_"
               f"{absorb:06X}_{uid}_CARD_BS")
        ident = f"Sentinel-1/SAR/CARD-BS/{t:%Y/%m/%d}/{ref}"
        data = out / "eodata" / ident / f"{ref}.data"
        data.mkdir(parents=True)
        files, nan_px = [], 0
        for pol in ("VV", "VH"):
            arr, transform, _ = bands[pol]
            lin = np.power(10.0, arr.astype(np.float64) / 10.0)
            nan = ~np.isfinite(arr)
            nan_px += int(nan.sum())
            lin[nan] = 0.0
            lin.astype(">f4").tofile(data / f"Gamma0_{pol}.img")
            (data / f"Gamma0_{pol}.hdr").write_text(envi_header(pol, arr.shape[1], arr.shape[0], transform),
                                                    encoding="ascii")
            files += [f"{ref}.data/Gamma0_{pol}.img", f"{ref}.data/Gamma0_{pol}.hdr"]
        products.append({"kind": "S1", "source": d, "source_ts": ts, "time": t, "stop": stop, "platform": plat,
                         "absolute": absorb, "relative": rel, "residual": res, "other_residual": other,
                         "name": ref, "identifier": "/eodata/" + ident, "files": files, "nan_px": nan_px})
    return products


# --------------------------------------------------------------------------- catalogues
def write_catalogue(path: Path, features: list[dict], note: str) -> None:
    doc = {
        "type": "FeatureCollection",
        "properties": {
            "id": feature_id(path.name),
            "totalResults": len(features),
            "exactCount": True,
            "startIndex": 1,
            "itemsPerPage": len(features),
            "query": {"note": note},
            "links": [{"rel": "self", "type": "application/json", "title": "self",
                       "href": f"include/sample/catalogue/{path.name}"}],
        },
        "features": features,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    head = json.dumps({k: v for k, v in doc.items() if k != "features"}, ensure_ascii=False)
    body = ",\n".join(json.dumps(f, ensure_ascii=False, separators=(",", ":")) for f in features)
    path.write_text(head[:-1] + ', "features": [\n' + body + "\n]}\n", encoding="utf-8")


def s2_features(products: list[dict]) -> list[dict]:
    x0, y1 = TILE_UL
    ring = densified_lonlat(x0, y1 - TILE_SIZE, x0 + TILE_SIZE, y1, 8)
    feats = []
    for p in products:
        title = p["name"] + ".SAFE"
        feats.append({"type": "Feature", "id": feature_id(title),
                      "geometry": {"type": "Polygon", "coordinates": [ring]},
                      "properties": {
                          "collection": "Sentinel2", "status": 0,
                          "productIdentifier": p["identifier"], "title": title,
                          "organisationName": "ESA",
                          "startDate": iso_z(p["time"]), "completionDate": iso_z(p["time"]),
                          "productType": "L2A", "processingLevel": "LEVEL2A",
                          "platform": p["platform"], "instrument": "MSI", "resolution": 10, "sensorMode": "",
                          "orbitNumber": p["absolute"], "cloudCover": p["cloud"],
                          "orbitDirection": "descending", "relativeOrbitNumber": p["relative"],
                          "processingBaseline": float(p["baseline"]), "missionTakeId": p["datatake"]}})
    return feats


def s1_features(products: list[dict], bounds: tuple[float, float, float, float]) -> list[dict]:
    b = S1_FOOTPRINT_BUFFER_M
    ring = densified_lonlat(bounds[0] - b, bounds[1] - b, bounds[2] + b, bounds[3] + b, 4)
    feats = []
    for p in products:
        feats.append({"type": "Feature", "id": feature_id(p["name"]),
                      "geometry": {"type": "Polygon", "coordinates": [ring]},
                      "properties": {
                          "collection": "Sentinel1", "status": 0,
                          "productIdentifier": p["identifier"], "title": p["name"],
                          "organisationName": "ESA",
                          "startDate": iso_z(p["time"]), "completionDate": iso_z(p["stop"]),
                          "productType": "CARD-BS", "processingLevel": "LEVEL2",
                          "platform": p["platform"], "instrument": "SAR", "sensorMode": "IW",
                          "polarisation": "VV&VH", "orbitNumber": p["absolute"],
                          "orbitDirection": "ascending", "relativeOrbitNumber": p["relative"]}})
    return feats


# --------------------------------------------------------------------------- products.csv
def write_products_csv(path: Path, s2: list[dict], s1: list[dict]) -> None:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["card", "source_folder", "sensing_time_utc", "platform", "absolute_orbit", "relative_orbit",
                "orbit_residual", "other_platform_residual", "processing_baseline", "cloud_cover_patch",
                "reference", "product_identifier"])
    for p in s2 + s1:
        w.writerow(["s2" if p["kind"] == "S2" else "bs", p["source"].relative_to(p["source"].parents[2]).as_posix(),
                    p["time"].isoformat(), p["platform"], p["absolute"], p["relative"], f"{p['residual']:+.3f}",
                    f"{p['other_residual']:.3f}", p.get("baseline", ""),
                    "" if p.get("cloud") is None else p["cloud"], p["name"], p["identifier"]])
    path.write_text(buf.getvalue(), encoding="utf-8")


# --------------------------------------------------------------------------- verification
def verify(out: Path, s2: list[dict], s1: list[dict], parcels: list[dict]) -> list[str]:
    """Read everything back; raises AssertionError on any difference."""
    lines = []
    n = 0
    for p in s2:
        safe = out / "eodata" / p["identifier"][len("/eodata/"):]
        for rel in p["files"]:
            band = rel.rsplit("_", 2)[1]
            src = p["source"] / f"S2L2A_{PATCH}_{p['source_ts']}_{band}.tif"
            with rasterio.open(src) as a, rasterio.open(safe / rel) as b:
                assert b.driver == "JP2OpenJPEG" and b.crs.to_epsg() == EPSG, (rel, b.crs)
                assert b.transform == a.transform and b.dtypes == a.dtypes, (rel, b.transform, a.transform)
                assert np.array_equal(a.read(1), b.read(1)), f"{rel}: pixels differ"
                assert b.nodata is None, (rel, b.nodata)
            n += 1
    lines.append(f"{n} JPEG2000 files read back bit-identical to their GeoTIFF source "
                 f"(EPSG:{EPSG}, same transform and dtype; no nodata declared)")
    n, worst = 0, 0.0
    for p in s1:
        data = out / "eodata" / p["identifier"][len("/eodata/"):]
        for rel in p["files"]:
            if not rel.endswith(".img"):
                continue
            pol = rel[-6:-4]
            src = p["source"] / f"S1GRDasc_{PATCH}_{p['source_ts']}_{pol}_db.tif"
            with rasterio.open(src) as a, rasterio.open(data / rel) as b:
                assert b.driver == "ENVI" and b.crs.to_epsg() == EPSG, (rel, b.crs)
                assert b.transform == a.transform and b.dtypes[0] == "float32", (rel, b.transform)
                db, got = a.read(1), b.read(1)
            raw = np.fromfile(data / rel, dtype=">f4").reshape(got.shape)
            assert np.array_equal(raw, got), f"{rel}: GDAL did not read the big-endian file as written"
            nan = ~np.isfinite(db)
            assert np.all(got[nan] == 0.0), f"{rel}: NaN not mapped to 0"
            want = np.power(10.0, db[~nan].astype(np.float64) / 10.0)
            rel_err = np.abs(got[~nan].astype(np.float64) - want) / want
            worst = max(worst, float(rel_err.max()) if rel_err.size else 0.0)
            assert rel_err.max() <= 1e-6, f"{rel}: relative error {rel_err.max()}"
            n += 1
    lines.append(f"{n} ENVI .img files equal 10**(dB/10) (max relative error {worst:.2e}), NaN -> 0.0, "
                 f"EPSG:{EPSG}, same transform as the source")
    # Parcels.
    ds = ogr.Open(str(out / "parcels" / f"flanders_{PATCH}.gpkg"))
    assert ds.GetLayerCount() == 1
    lyr = ds.GetLayer(0)
    assert lyr.GetName() == "parcels" and lyr.GetSpatialRef().GetAuthorityCode(None) == str(EPSG)
    feats = list(lyr)
    assert [f.GetFID() for f in feats] == list(range(1, 21)) and feats[0].GetField("name") == "lpis_maize_2018"
    assert len({f.GetField("name") for f in feats}) == 20
    lines.append(f"parcels: {len(feats)} polygons (FID 1 = the real LPIS parcel), EPSG:{EPSG}")
    # The project's own catalogue parser.
    sys.path.insert(0, str(REPO))
    from cbm_ops.harvest import parsers, records  # noqa: PLC0415

    for fname, card, count in (("s2_l2a.json", "s2", len(s2)), ("s1_card_bs.json", "bs", len(s1))):
        page = parsers.parse_file(out / "catalogue" / fname)
        recs = [records.normalise(r, "sample") for r in page.records]
        assert len(recs) == count == page.total, (fname, len(recs), count)
        refs = set()
        for r in recs:
            assert r is not None and r.card == card and r.epsg == EPSG, r
            assert card != "s2" or (r.tile == TILE and r.processing_baseline < "04.00"), r
            path = out / "eodata" / r.product_identifier[len("/eodata/"):]
            assert r.product_identifier.startswith("/eodata/") and path.is_dir(), r.product_identifier
            refs.add(r.reference)
        assert len(refs) == count, f"{fname}: duplicate references"
        lines.append(f"catalogue/{fname}: {len(recs)} records normalised by cbm_ops.harvest "
                     f"(card {card}, EPSG {EPSG}{', tile ' + TILE if card == 's2' else ''}), "
                     "every product_identifier exists under eodata/")
    stray = [p for p in out.rglob("*.aux.xml")]
    assert not stray, stray
    biggest = max((p.stat().st_size, p) for p in out.rglob("*") if p.is_file())
    assert biggest[0] < 5 * 1024 * 1024, biggest
    return lines


# --------------------------------------------------------------------------- README
def inventory(out: Path) -> list[tuple[str, int, int]]:
    groups = [
        ("eodata/Sentinel-2/**/*.jp2", "Sentinel-2 band files (JPEG2000)"),
        ("eodata/Sentinel-2/**/MTD_MSIL2A.xml", "Sentinel-2 MTD_MSIL2A.xml"),
        ("eodata/Sentinel-1/**/*.img", "CARD-BS Gamma0_*.img (ENVI, big-endian float32)"),
        ("eodata/Sentinel-1/**/*.hdr", "CARD-BS Gamma0_*.hdr"),
        ("catalogue/*.json", "offline catalogue responses"),
        ("parcels/*.gpkg", "parcel GeoPackages"),
        ("*.csv", "products.csv (reconstructed fields per product)"),
        ("SOURCE-*.md", "copies of the input data sets' SOURCE.md"),
    ]
    rows = []
    for pattern, label in groups:
        files = [p for p in out.glob(pattern) if p.is_file()]
        rows.append((label, len(files), sum(p.stat().st_size for p in files)))
    return rows


def time_range(products: list[dict], rel: int) -> str:
    tod = sorted(p["time"].time() for p in products if p["relative"] == rel)
    return f"{tod[0]:%H:%M:%S}–{tod[-1]:%H:%M:%S}"


def orbit_table(products: list[dict]) -> str:
    c = Counter((p["platform"], p["relative"]) for p in products)
    return "\n".join(f"| {plat} | {rel:03d} | {n} |" for (plat, rel), n in sorted(c.items()))


def baseline_table(products: list[dict]) -> str:
    out = []
    for base in sorted({p["baseline"] for p in products}):
        mine = [p["time"] for p in products if p["baseline"] == base]
        out.append(f"| {base} | {min(mine):%Y-%m-%d} … {max(mine):%Y-%m-%d} | {len(mine)} |")
    return "\n".join(out)


def readme(out: Path, s2: list[dict], s1: list[dict], parcels: list[dict], s2_log: list[str],
           s1_log: list[str], checks: list[str], mechelen: bool) -> str:
    inv = inventory(out)
    total_files = sum(n for _, n, _ in inv)
    total_bytes = sum(b for _, _, b in inv)
    inv_rows = "\n".join(f"| {label} | {n} | {sizeof(b)} |" for label, n, b in inv if n)
    ex2, ex1 = s2[0], s1[0]
    nan_s1 = sum(p["nan_px"] for p in s1)
    parcels_rows = "\n".join(f"| {fid} | {r['name']} | {r['kind']} | {r['ct']} | {r['ct_name']} | "
                             f"{r['area_m2']:.0f} |" for fid, r in enumerate(parcels, 1))
    s2_res = max(abs(p["residual"]) for p in s2)
    s1_res = max(abs(p["residual"]) for p in s1)
    s2_other = min(p["other_residual"] for p in s2)
    s1_other = min(p["other_residual"] for p in s1)
    mech_licence = ""
    mech = f"""
## No second AOI (Mechelen)

`{MECHELEN_SET}` (10 real Flemish LPIS parcels of 2023 in Mechelen with Sentinel-1 weekly
files) was considered and left out:

- its source repository has no LICENSE file and its SOURCE.md says not to republish the
  files without checking, so they are not committed to this open-source project;
- its only Sentinel-1 files are weekly openEO composites with `time_reducer = last` (the
  last valid value *per pixel* in the week, not necessarily one acquisition) without an
  acquisition time, and Mechelen (4.53 E) lies in the swaths of more than one ascending
  track: no obstime, and so no product name, can be derived defensibly;
- its Sentinel-2 file is a weekly *mean* composite, not an L2A product.

The tests still use those files in place (`../shared/data`) to compare the statistics with
rasterstats on real Mechelen parcels.
"""
    if mechelen:
        mech_licence = (f"- Mechelen parcels: see `SOURCE-{MECHELEN_SET}.md` (no LICENSE file in the source "
                        "repository; Flemish LPIS open data by the data collector's understanding).")
        mech = f"""
## Second AOI: `parcels/mechelen_lpis_2023.gpkg` (parcels only)

Copied byte for byte from `{MECHELEN_SET}/original/inputdata/Prc_BEFL_2023_2023-07-24.gpkg`
(10 real Flemish LPIS parcels of the 2023 declaration, Mechelen, EPSG:31370, layer
`prc_befl_2023_20230724`; upstream GitHub `theroggy/cropclassification` commit
`59ad8c6ad3681cbb9dcf05c1d93cd845745aa6f7`, `markers/_inputdata/`; see
`SOURCE-{MECHELEN_SET}.md`). Licence caveat of that SOURCE.md: the repository has no
LICENSE file; the parcels come from the open Flemish "Landbouwgebruikspercelen"
(understanding of the data collector, not stated by the source).

**No imagery is packaged for Mechelen**, on purpose. Its only Sentinel-1 files are weekly
openEO composites with `time_reducer = last`: the last valid value *per pixel* in the week,
which need not be a single acquisition, and the acquisition time is not recorded. Mechelen
(4.53 E) lies in the swaths of more than one ascending track (relative orbit 88, whose
17:24 UTC pass is the real GEE record quoted under "Orbit arithmetic", and very probably 161)
and, with only
S1A flying in 2024, a week holds 0 to 2 passes per direction: the obstime (and so the
product name) of each file cannot be derived defensibly. The Sentinel-2 file there is a
weekly *mean* composite (not an L2A product) and is not packaged either.
"""
    return f"""# include/sample — real Sentinel data in the CREODIAS `/eodata` layout

Small, committed sample that the demo and tests run the pipeline on offline. It is
**generated**: `make sample` runs `scripts/build_sample.py`, which deletes this directory
and rebuilds it from `../shared/data` (read-only input); two runs give byte-identical
files (fixed timestamps, no `now()`). Do not edit files here by hand.

- **What**: {len(s2)} Sentinel-2 L2A products ({s2[0]['time']:%Y-%m-%d} … {s2[-1]['time']:%Y-%m-%d}) and
  {len(s1)} Sentinel-1 CARD-BS products ({s1[0]['time']:%Y-%m-%d} … {s1[-1]['time']:%Y-%m-%d}, ascending) over one
  640 m × 640 m patch in West Flanders (patch `{PATCH}` of the ESA WorldCereal CIB training
  data, between Ieper and Menen, EPSG:32631 box 501360, 5629040, 502000, 5629680, tile T{TILE}),
  plus {len(parcels)} parcel polygons of that patch and the offline catalogue responses listing
  the products.
- **Real**: every pixel value and every geometry comes from real data (below). Only format
  conversions were applied. The product *names* and some metadata are reconstructed (see
  "Reconstructed names"), because the source keeps sensing times but not the product names.

## Inventory

{total_files} files, {sizeof(total_bytes)} in total (apparent size; not counting this README).

| kind | files | size |
|---|---|---|
{inv_rows}

Layout (example product of each kind):

```
eodata/Sentinel-2/MSI/L2A/{ex2['time']:%Y/%m/%d}/{ex2['name']}.SAFE/
    MTD_MSIL2A.xml
    {ex2['files'][0]}   (+ B03 B04 B08)
    {ex2['files'][4]}   (+ B06 B07 B8A B11 B12 SCL)
eodata/Sentinel-1/SAR/CARD-BS/{ex1['time']:%Y/%m/%d}/{ex1['name']}/
    {ex1['name']}.data/Gamma0_VV.img + Gamma0_VV.hdr (+ Gamma0_VH.*)
catalogue/s2_l2a.json       resto GeoJSON FeatureCollection, {len(s2)} features (CREODIAS finder shape)
catalogue/s1_card_bs.json   resto GeoJSON FeatureCollection, {len(s1)} features
parcels/flanders_{PATCH}.gpkg   layer `parcels`, {len(parcels)} polygons, EPSG:32631
products.csv                every product with its reconstructed fields and orbit residuals
```

`catalogue/` holds only catalogue responses: `cbm_ops.harvest.OfflineSource` reads every
`*.json` in it.

## Where every file comes from

Input data set: `../shared/data/{SRC_SET}/derived/{PATCH}/` (its `SOURCE.md` is copied
here as `SOURCE-{SRC_SET}.md`). Upstream: {UPSTREAM}. The NetCDFs there were extracted by
WorldCereal from Google Earth Engine (`source = googleearthengine`).

| files here | from | conversion |
|---|---|---|
| `…/IMG_DATA/R10m/T{TILE}_<t>_<band>_10m.jp2` (B02 B03 B04 B08) | `s2/<ts>/S2L2A_{PATCH}_<ts>_<band>.tif` (GEE `COPERNICUS/S2_SR`, uint16 DN, 64×64 px) | GeoTIFF → lossless JPEG2000, GDAL JP2OpenJPEG `QUALITY=100 REVERSIBLE=YES YCBCR420=NO`, georeferencing in a GeoJP2 box (`GMLJP2=NO`: ESA's files carry a GMLJP2 box instead, which GDAL reads to the same CRS and transform but which would add ~1.6 KB to each file), no nodata declared (DN 0 is nodata for the pipeline; the source has no zeros in reflectance bands) |
| `…/IMG_DATA/R20m/T{TILE}_<t>_<band>_20m.jp2` (B05 B06 B07 B8A B11 B12 SCL) | same folder, 32×32 px at the native 20 m | same; SCL stays uint8 |
| `MTD_MSIL2A.xml` | written by the script | reduced PSD-14 product metadata (see below) |
| `<REF>.data/Gamma0_<pol>.img` | `s1/<ts>/S1GRDasc_{PATCH}_<ts>_<pol>_db.tif` (GEE `COPERNICUS/S1_GRD`, float32 dB, 32×32 px, 20 m) | linear power `10**(dB/10)` computed in float64 and stored as float32; NaN → 0.0 (CARD-BS no-data value; {nan_s1} NaN pixels occur in this patch); written big-endian (ENVI `byte order = 1`) like SNAP |
| `<REF>.data/Gamma0_<pol>.hdr` | written by the script | ENVI header in the key order and number format of SNAP's `EnviHeader` writer (`snap-engine` `org/esa/snap/core/dataio/dimap/EnviHeader.java`): `map info = {{UTM,1.0,1.0,<E>,<N>,20.0,20.0,31,North,WGS84,units=Meters}}` where reference pixel (1,1) is the upper-left corner of the upper-left pixel and E/N are that corner's coordinates; `coordinate system string` = one-line OGC WKT1 of EPSG:32631 |
| `parcels/flanders_{PATCH}.gpkg` | `derived/parcels_epsg32631.gpkg` | FID 1: the one record of layer `lpis_sample_polygons` with `has_imagery_here` true (real Flemish LPIS parcel, maize 2018, from `cib/database.json`); FIDs 2–20: the 19 regions of layer `lpis_raster_polygonised` with `patch_id = {PATCH}`, in `region_id` order. Geometries copied unchanged (EPSG:32631); `area_m2` = geometry area |
| `catalogue/*.json` | written by the script | see "Catalogue responses" |
| `products.csv` | written by the script | one row per product: source folder, sensing time, reconstructed platform, orbits (with residuals), baseline, patch cloud cover, name, productIdentifier |
| `SOURCE-*.md` | `../shared/data/<set>/SOURCE.md` | verbatim copies (provenance, licence notes, how the inputs were verified) |

No BEAM-DIMAP `.dim` file is written: the pipeline reads only the `.data/` bands.

### The parcels

| fid | name | kind | ct | ct_name | area_m2 |
|---|---|---|---|---|---|
{parcels_rows}

The 19 regions are **polygonised rasterised LPIS** (the WorldCereal 10 m crop-type label
raster of the 2018 Flemish LPIS, polygonised with 4-connectivity by the data collector):
boundaries are real parcel boundaries at 10 m pixel precision, but adjacent parcels with the
same crop are merged and regions at the patch edge are cut. They are not original LPIS
parcels. The real maize parcel (fid 1) overlaps the maize region it is part of; both are kept.

### Caveats on the pixel data

- **S1 is sigma0, not gamma0.** GEE `COPERNICUS/S1_GRD` is sigma0 (thermal noise removed,
  calibrated, terrain-corrected with SRTM). It is stored in files named `Gamma0_VV/VH` only
  to follow the CARD-BS layout the pipeline reads; the values are sigma0 in linear power.
  Sigma0 and (terrain-flattened) gamma0 differ by the incidence angle: on flat terrain
  gamma0 ≈ sigma0 / cos θ, i.e. about 0.6–1.6 dB higher at the IW incidence angles 30–46°.
- S2 values are the GEE `COPERNICUS/S2_SR` DNs (reflectance × 10000, offset 0: these products
  predate processing baseline 04.00, so there is no `BOA_ADD_OFFSET`), unchanged.
- S2 cloud cover in the catalogue is the percentage of the **patch's** 32×32 SCL pixels in
  classes 8, 9, 10 (cloud medium/high probability, cirrus), not the tile's.

## Reconstructed names and metadata

The source gives, per acquisition, only the sensing time (S2: `SENSING_TIME_UTC`, the time
GEE attaches to the granule; S1: `ACQUISITION_TIME_UTC`, taken to be the GRD product start
time) and the S1 pass direction. Everything else in a product name is reconstructed:

**Sentinel-2** `S2x_MSIL2A_<datatake>_N<baseline>_R<rel>_T{TILE}_<discriminator>.SAFE`,
e.g. `{ex2['name']}`:

| part | how |
|---|---|
| `S2x` platform | orbit arithmetic (below): the one of S2A/S2B that crossed the patch latitude at the sensing time |
| `<datatake>` | **the source's sensing time stands in for the datatake sensing start.** Real datatakes start minutes earlier further north (e.g. relative orbit 94 over T{TILE}: datatake 10:56:21, granule 11:04:07); the true value is not in the data. Also used for DATATAKE_SENSING_START, PRODUCT_START/STOP_TIME, the granule directory and the band file names (in real products the granule directory carries the datastrip sensing time) |
| `N<baseline>` | ESA's Level-2A processing baseline in force at the sensing date (table below) |
| `R<rel>` | relative orbit from the reconstructed absolute orbit |
| `<discriminator>` | sensing date + `T120000` (fixed, invented processing time); GENERATION_TIME matches |
| `A<abs>` (granule dir), datatake id `GS2x_<datatake>_<abs>_N<baseline>` | reconstructed absolute orbit |

Processing baseline by sensing date (GEE `COPERNICUS/S2_SR` took ESA's L2A products; for
2017–2018 Europe these are ESA's pilot (from sensing date 2017-03-28) and, from 2018-03-26,
operational Level-2A production):

| baseline | products here (sensing dates) | count |
|---|---|---|
{baseline_table(s2)}

Evidence: pilot products carried the L1C baseline number (02.05, then 02.06 from 23 Oct 2017 —
ESA "processing baseline" table; ESA, 2 March 2018: from the operational start "the Level-2A
processing baseline number is and will be maintained independently from that of the Level-1C
product"; real pilot names `…20170610T105029_N0205_R051_T31UET…`,
`…20171224T095421_N0206_R079_T34UCF…`); ESA news of 20 March 2018: operational L2A from
26 March 2018 tagged 02.07, pilot 02.06 stopped the same day. The later switch days are only
bracketed by real product names of ESA's same-day production: 02.07 on 2018-04-01/04-06/05-07
and 02.08 on 2018-05-29/06-01/06-30/09-30, 02.09 on 2018-10-10/10-13/10-24, 02.10 on
2018-11-08/11-11/11-15; the script switches on 2018-05-23, 2018-10-08 and 2018-11-06, so the
baselines of products sensed 2018-05-08…05-28, 2018-10-01…10-09 and 2018-10-25…11-07 are
uncertain. All are below 04.00, which is what matters to the pipeline (no offset).

Not reproduced from real products: the 2017 pilot products (02.05/02.06) had a different
internal layout (`L2A_T31UDS_…_B04_10m.jp2` band names, pilot metadata); the sample uses the
operational (PSD 14.5) layout for all products. `MTD_MSIL2A.xml` is a reduced file (product
info, datatake, special values, quantification values, spectral band list, granule file
list) with an XML comment saying it is a reconstruction.

**Sentinel-1** `S1x_IW_GRDH_1SDV_<start>_<stop>_<abs>_<datatake>_<uid>_CARD_BS`,
e.g. `{ex1['name']}`:

| part | how |
|---|---|
| `S1x`, `<abs>` | orbit arithmetic (below) |
| `<start>` | the source's acquisition time (GEE product start) — real |
| `<stop>` | start + 25 s (the usual IW GRD slice length), reconstructed |
| `<datatake>` | the absolute orbit number written in hexadecimal (6 digits) — invented, deterministic; real mission datatake ids are a different counter |
| `<uid>` | first 4 hex digits (upper case) of SHA-1 of `<platform>_<start>` — invented, deterministic |
| `IW_GRDH_1SDV` | GEE `COPERNICUS/S1_GRD` IW dual-pol VV+VH high-resolution GRD, as the source |

### Orbit arithmetic

Sentinel-2 repeats its ground track every 143 orbits (10 days), Sentinel-1 every 175 orbits
(12 days); S2A/S2B and S1A/S1B share one orbital plane, 180° apart. For each platform a real
product of known absolute orbit and time (an *anchor*) fixes the orbit count; for each
sensing time the script computes, per platform, the fractional orbit count at which that
platform crosses the patch latitude (50.82° N, descending for S2, ascending for S1; the
argument of latitude of the anchor point is taken into account where the anchor's latitude
is known). The satellite that imaged the patch is at an integer count (largest residual
here: S2 {s2_res:.3f}, S1 {s1_res:.3f} orbit); the other one is half an orbit away, on the
night side of the Earth (smallest residual of the other platform: S2 {s2_other:.3f}, S1
{s1_other:.3f}). The script asserts exactly one candidate per sensing time. The S2 residuals
spread up to ±0.07 orbit (±7 min) before 2018-11-06 and are a constant +0.028 after it: the
source times are ESA's tile sensing times, which until the L1C baseline 02.07 of 6 November 2018
were not the tile's own acquisition time (ESA: 02.07 "improved the accuracy of the tile sensing
time ... average acquisition time of all relevant pixels"). A wrong platform or relative orbit
would need an error of half an orbit (~50 min).

Sentinel-2 anchors and checks (run by the script):

```
{chr(10).join(s2_log)}
```

Sentinel-1 anchors and checks:

```
{chr(10).join(s1_log)}
```

Result (products per platform and relative orbit):

| platform | relative orbit | Sentinel-2 products |
|---|---|---|
{orbit_table(s2)}

| platform | relative orbit | Sentinel-1 products |
|---|---|---|
{orbit_table(s1)}

T{TILE} is covered by relative orbits 051 (sensing times {time_range(s2, 51)} UTC here) and 094
({time_range(s2, 94)} UTC);
both occur in real T{TILE} product names (`S2A_MSIL1C_20190419T105621_N0207_R094_T31UDS…`,
`S2B_MSIL1C_20250320T104639_N0511_R051_T31UDS…`).

**Sentinel-1: relative orbits 161 and 59, not 88 and 161.** The source's SOURCE.md says
"relative orbits 88 and 161 over Belgium". The arithmetic says the patch's 17:32 UTC passes
({time_range(s1, 161)} UTC) are relative orbit 161 and its 17:40 passes ({time_range(s1, 59)} UTC)
relative orbit 59, and two real products
confirm it: the real S1B CARD-BS product of absolute orbit 15164 (relative orbit 88) was
sensed at 17:24:36 UTC at about the patch latitude (orbit phase −0.013 orbit from it), 8
minutes (one track, ~2° of longitude further east) before the 17:32 passes; and a real GEE S1A image of relative orbit 88
(`S1A_IW_GRDH_1SDV_20180405T172429_…_021335_…`, 17:24 UTC) has the western (near-range)
edge of its swath at about 4.1° E at 51° N, so relative orbit 88 does not reach the patch at
3.02° E. Track 88 covers Belgium east of about 4.1° E; the patch in West Flanders is seen
from tracks 161 and 59. The 6-day S1A+S1B revisit gives the ~2 passes per 6 days of the source.

## Catalogue responses

`catalogue/s2_l2a.json` and `catalogue/s1_card_bs.json` are resto GeoJSON
FeatureCollections shaped like the real CREODIAS finder response in
`tests/fixtures/catalogue/creodias_finder_resto_Sentinel2_L2A_search.json` (top-level
`properties` with totalResults, exactCount, startIndex, itemsPerPage, links; per feature a
UUID-5 `id` derived from the title, `geometry`, and resto `properties`). `productIdentifier`
is `/eodata/<path of the product here>`; `startDate` = sensing time (S1 `completionDate` =
the reconstructed stop); `orbitNumber`, `relativeOrbitNumber`, `platform`, `processingBaseline`
and `missionTakeId` are the reconstructed values above; `cloudCover` (S2) is the patch value.

Footprints:
- S2: the real extent of MGRS tile T{TILE} (upper-left 499980 E, 5700000 N, 109800 m square in
  EPSG:32631), densified (8 points per edge) and transformed to EPSG:4326 with pyproj
  (lon/lat order). Whether each product's data covered the whole tile is not known.
- S1: the real CARD-BS footprint (a ~250 km wide swath slice) is not known; the footprint is
  the patch extent widened by 10 km on each side (EPSG:32631, densified, to EPSG:4326). Its
  centroid is in UTM zone 31, like the real products' would be.
{mech}
## Verification (run by the script on every build)

{chr(10).join('- ' + c for c in checks)}

## Attribution and licences

- Contains modified Copernicus Sentinel data 2017–2018, processed by ESA (GEE COPERNICUS/S2_SR, COPERNICUS/S1_GRD) and ESA WorldCereal.
- Parcels: Flemish LPIS (Landbouwgebruikspercelen, Departement Landbouw en Visserij), via ESA WorldCereal.
- Licences as stated in the input's SOURCE.md: at commit `5db1e24d` the WorldCereal
  repository had **no LICENSE file**; the current repository (HEAD) is **MIT** ("Copyright (c)
  2024 ESA WorldCereal"). The data collector's understanding (not stated by the source): the
  LPIS is Flemish open data and the Sentinel data are Copernicus free and open data.
{mech_licence}
"""


# --------------------------------------------------------------------------- main
NOTE_S2 = ("Offline sample built by scripts/build_sample.py: real GEE COPERNICUS/S2_SR pixels of WorldCereal "
           f"patch {PATCH}; product names, orbits and baselines reconstructed (include/sample/README.md).")
NOTE_S1 = ("Offline sample built by scripts/build_sample.py: real GEE COPERNICUS/S1_GRD sigma0 of WorldCereal "
           f"patch {PATCH} as linear power in CARD-BS layout; names reconstructed (include/sample/README.md).")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=Path(os.environ.get("CBM_SHARED_DATA", DEFAULT_DATA)),
                    help="the shared data directory (default ../shared/data)")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output directory (deleted and rebuilt)")
    args = ap.parse_args()
    src = args.data / SRC_SET / "derived" / PATCH
    if not src.is_dir():
        print(f"input {src} not found (use --data)", file=sys.stderr)
        return 2
    out = args.out.resolve()
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)

    m2, s2_log = s2_model()
    m1, s1_log = s1_model()
    parcels = build_parcels(args.data / SRC_SET / "derived" / "parcels_epsg32631.gpkg", out)
    s2 = build_s2(src, out, m2)
    s1 = build_s1(src, out, m1)
    rel2 = {p["relative"] for p in s2}
    rel1 = {p["relative"] for p in s1}
    assert rel2 == EXPECTED_S2_REL, f"Sentinel-2 relative orbits {sorted(rel2)} != {sorted(EXPECTED_S2_REL)}"
    assert rel1 == EXPECTED_S1_REL, f"Sentinel-1 relative orbits {sorted(rel1)} != {sorted(EXPECTED_S1_REL)}"
    assert len({p["name"] for p in s2}) == len(s2) and len({p["name"] for p in s1}) == len(s1)

    with rasterio.open(src / "s1" / s1[0]["source_ts"] / f"S1GRDasc_{PATCH}_{s1[0]['source_ts']}_VV_db.tif") as ds:
        bounds = tuple(ds.bounds)
    write_catalogue(out / "catalogue" / "s2_l2a.json", s2_features(s2), NOTE_S2)
    write_catalogue(out / "catalogue" / "s1_card_bs.json", s1_features(s1, bounds), NOTE_S1)
    write_products_csv(out / "products.csv", s2, s1)
    shutil.copyfile(args.data / SRC_SET / "SOURCE.md", out / f"SOURCE-{SRC_SET}.md")

    # The Mechelen set (befl-mechelen-markers) is not packaged: its source repository has no
    # licence ("do not republish without checking") and no acquisition time of its S1 files
    # can be derived (see the README section written below).
    mechelen = False

    checks = verify(out, s2, s1, parcels)
    (out / "README.md").write_text(readme(out, s2, s1, parcels, s2_log, s1_log, checks, mechelen),
                                   encoding="utf-8")

    for c in checks:
        print("ok:", c)
    for name, prods in (("Sentinel-2", s2), ("Sentinel-1", s1)):
        c = Counter((p["platform"], p["relative"]) for p in prods)
        print(f"{name}: {len(prods)} products; " + ", ".join(f"{k[0]} R{k[1]:03d}: {n}" for k, n in sorted(c.items())))
    total = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    print(f"{out}: {sum(1 for p in out.rglob('*') if p.is_file())} files, {total / 1024 / 1024:.2f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
