"""SYNTHETIC Sentinel products in the production layout, with known pixel values.

Used where the real sample cannot exercise a code path: Sentinel-2 baseline >= 04.00
(BOA_ADD_OFFSET), CARD-COH6, corrupt files. Names follow the real naming scheme; the
values are generated.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from pathlib import Path

import numpy as np
import psycopg
import rasterio
import shapely
from affine import Affine
from conftest import shared
from osgeo import ogr, osr
from pyproj import CRS, Transformer
from rasterio.features import geometry_mask

from cbm_ops.config import S2_NATIVE_RES, AoiConfig
from cbm_ops.extract import run_queue
from cbm_ops.grid.stored import rasterize_aoi
from cbm_ops.harvest import harvest
from cbm_ops.parcels import import_parcels

S2_XML = """<?xml version="1.0" encoding="UTF-8"?>
<n1:Level-2A_User_Product xmlns:n1="https://psd-14.sentinel2.eo.esa.int/PSD/User_Product_Level-2A.xsd">
  <n1:General_Info>
    <Product_Info>
      <PRODUCT_URI>{name}.SAFE</PRODUCT_URI>
      <PROCESSING_BASELINE>{baseline}</PROCESSING_BASELINE>
    </Product_Info>
    <Product_Image_Characteristics>
      <QUANTIFICATION_VALUES_LIST>
        <BOA_QUANTIFICATION_VALUE unit="none">10000</BOA_QUANTIFICATION_VALUE>
      </QUANTIFICATION_VALUES_LIST>
      {offsets}
      <Spectral_Information_List>{spectral}</Spectral_Information_List>
    </Product_Image_Characteristics>
  </n1:General_Info>
</n1:Level-2A_User_Product>
"""
PHYSICAL = ("B1", "B2", "B3", "B4", "B5", "B6", "B7", "B8", "B8A", "B9", "B10", "B11", "B12")


def s2_name(t: dt.datetime, baseline: str = "05.10", tile: str = "31UDS", mission: str = "S2B") -> str:
    return f"{mission}_MSIL2A_{t:%Y%m%dT%H%M%S}_N{baseline.replace('.', '')}_R051_T{tile}_{t:%Y%m%d}T120000"


def write_s2_safe(eodata: Path, t: dt.datetime, x0: float, y0: float, bands: dict[str, np.ndarray],
                  *, baseline: str = "05.10", offset: int | None = -1000, tile: str = "31UDS",
                  epsg: int = 32631) -> str:
    """Write a SAFE product; 10 m and 20 m bands on the grid with upper-left (x0, y0)."""
    name = s2_name(t, baseline, tile)
    safe = eodata / f"Sentinel-2/MSI/L2A/{t:%Y/%m/%d}/{name}.SAFE"
    gran = safe / "GRANULE" / f"L2A_T{tile}_A012345_{t:%Y%m%dT%H%M%S}" / "IMG_DATA"
    offs = ""
    if offset is not None:
        offs = "<BOA_ADD_OFFSET_VALUES_LIST>" + "".join(
            f'<BOA_ADD_OFFSET band_id="{i}">{offset}</BOA_ADD_OFFSET>' for i in range(13)) + \
            "</BOA_ADD_OFFSET_VALUES_LIST>"
    spectral = "".join(f'<Spectral_Information bandId="{i}" physicalBand="{b}"/>' for i, b in enumerate(PHYSICAL))
    safe.mkdir(parents=True)
    (safe / "MTD_MSIL2A.xml").write_text(S2_XML.format(name=name, baseline=baseline, offsets=offs,
                                                       spectral=spectral))
    for band, arr in bands.items():
        res = S2_NATIVE_RES[band]
        d = gran / f"R{res}m"
        d.mkdir(parents=True, exist_ok=True)
        path = d / f"T{tile}_{t:%Y%m%dT%H%M%S}_{band}_{res}m.jp2"
        with rasterio.open(path, "w", driver="JP2OpenJPEG", width=arr.shape[1], height=arr.shape[0], count=1,
                           dtype=arr.dtype, crs=f"EPSG:{epsg}", transform=Affine(res, 0, x0, 0, -res, y0),
                           QUALITY=100, REVERSIBLE="YES", YCBCR420="NO") as ds:
            ds.write(arr, 1)
    return name


def s1_ref(t: dt.datetime, card: str = "CARD_BS", absorb: int = 21474) -> str:
    stop = t + dt.timedelta(seconds=25)
    return f"S1A_IW_GRDH_1SDV_{t:%Y%m%dT%H%M%S}_{stop:%Y%m%dT%H%M%S}_{absorb:06d}_024F9D_E4C7_{card}"


def write_card_bs(eodata: Path, t: dt.datetime, x0: float, y0: float, res: float,
                  bands: dict[str, np.ndarray], epsg: int = 32631) -> str:
    """CARD-BS: ENVI float32, big-endian (byte order = 1) as SNAP writes it."""
    ref = s1_ref(t)
    data = eodata / f"Sentinel-1/SAR/CARD-BS/{t:%Y/%m/%d}/{ref}/{ref}.data"
    data.mkdir(parents=True)
    wkt = CRS.from_epsg(epsg).to_wkt("WKT1_ESRI")
    zone = epsg % 100
    for pol, arr in bands.items():
        arr.astype(">f4").tofile(data / f"Gamma0_{pol}.img")
        (data / f"Gamma0_{pol}.hdr").write_text(
            "ENVI\ndescription = {Sentinel-1 CARD-BS Gamma0 - Unit: linear}\n"
            f"samples = {arr.shape[1]}\nlines = {arr.shape[0]}\nbands = 1\nheader offset = 0\n"
            "file type = ENVI Standard\ndata type = 4\ninterleave = bsq\nbyte order = 1\n"
            f"band names = {{ Gamma0_{pol} }}\n"
            f"map info = {{UTM,1,1,{x0},{y0},{res},{res},{zone},North,WGS-84,units=Meters}}\n"
            f"coordinate system string = {{{wkt}}}\n")
    return ref


def write_card_coh6(eodata: Path, t: dt.datetime, x0: float, y0: float, res: float,
                    vv: np.ndarray, vh: np.ndarray, epsg: int = 32631) -> str:
    ref = s1_ref(t, "CARD_COH6")
    d = eodata / f"Sentinel-1/SAR/CARD-COH6/{t:%Y/%m/%d}/{ref}"
    d.mkdir(parents=True)
    with rasterio.open(d / f"{ref}.tif", "w", driver="GTiff", width=vv.shape[1], height=vv.shape[0], count=2,
                       dtype="float32", crs=f"EPSG:{epsg}", transform=Affine(res, 0, x0, 0, -res, y0)) as ds:
        ds.write(vv.astype(np.float32), 1)
        ds.write(vh.astype(np.float32), 2)
    return ref


def resto_feature(title: str, t: dt.datetime, product_type: str, ident: str, lonlat_box) -> dict:
    w, s, e, n = lonlat_box
    return {"type": "Feature", "id": str(uuid.uuid5(uuid.NAMESPACE_URL, title)),
            "geometry": {"type": "Polygon", "coordinates": [[[w, s], [e, s], [e, n], [w, n], [w, s]]]},
            "properties": {"title": title, "startDate": t.isoformat() + "Z", "completionDate": t.isoformat() + "Z",
                           "productType": product_type, "productIdentifier": ident}}


def write_catalogue(path: Path, features: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"type": "FeatureCollection",
                                "properties": {"totalResults": len(features), "itemsPerPage": len(features),
                                               "links": []},
                                "features": features}))

# ----------------------------------------------------------------- an AOI over the real Flanders parcels
FLANDERS_GPKG = ("worldcereal-cib-flanders-patches", "derived", "parcels_epsg32631.gpkg")
X0, Y0 = 501360.0, 5629680.0           # upper-left of patch 00002806639B424A (EPSG:32631)


def make_aoi(db_schema, tmp_path, cards=("s2",), **kw):
    eodata = tmp_path / "eodata"
    eodata.mkdir(exist_ok=True)
    cfg = AoiConfig(name="e", schema=db_schema, start_date=dt.date(2023, 1, 1), cards=cards,
                    parcels={"source": str(shared(*FLANDERS_GPKG)), "layer": "lpis_raster_polygonised"},
                    catalogue={"source": "offline", "path": str(tmp_path / "catalogue")},
                    store={"root": str(eodata)}, **kw)
    return cfg, eodata



def synthetic_s2_bands(seed=7):
    rng = np.random.default_rng(seed)
    bands = {b: rng.integers(800, 6000, (64, 64)).astype(np.uint16) for b in ("B02", "B03", "B04", "B08")}
    bands["B04"][:, :9] = 0                                  # nodata strip at the swath edge
    bands.update({b: rng.integers(800, 6000, (32, 32)).astype(np.uint16) for b in ("B05", "B11")})
    scl = rng.integers(1, 12, (32, 32)).astype(np.uint8)
    scl[:5] = 0
    bands["SCL"] = scl
    return bands



def harvest_all(url, cfg):
    return harvest(url, cfg, dt.datetime(2023, 1, 1), dt.datetime(2024, 1, 1))


# ----------------------------------------------------------------- overlapping granules of one datatake
# SYNTHETIC scenes over SYNTHETIC parcels at the UTM zone 31/32 boundary (6 deg E, 50.5 deg N):
# three Sentinel-2 granules of ONE datatake (tiles 31UGR and 31UGS in EPSG:32631, 32ULA in
# EPSG:32632) and two consecutive CARD-BS slices of ONE Sentinel-1 datatake, each covering the
# parcels partly (nodata elsewhere); used by the canonical-observation and export tests.
T = dt.datetime(2023, 6, 1, 10, 56, 21)           # the S2 datatake
T1 = dt.datetime(2023, 6, 2, 17, 32, 45)          # the S1 datatake: slices at T1 and T1 + 25 s
# SYNTHETIC parcels (lon, lat centre, crop): P1 west, P2 east of 6 deg E, P3 north-east
PARCELS = {1: (5.994, 50.500, "maize"), 2: (6.006, 50.500, "maize"), 3: (6.004, 50.5065, "wheat")}
HALF_W, HALF_H = 0.0011, 0.00045                  # ~ 155 m x 100 m
S2_GRANULES = {                                   # tile -> (EPSG, validity of a pixel centre (lon, lat))
    "31UGR": (32631, lambda lon, lat: (lon < 6.006) & (lat < 50.504)),
    "31UGS": (32631, lambda lon, lat: (lon < 6.006) & (lat < 50.504)),   # same lattice and data as 31UGR
    "32ULA": (32632, lambda lon, lat: lon > 5.994),
}
S1_SLICES = {0: (32631, lambda lon, lat: lon < 6.0), 25: (32632, lambda lon, lat: lon > 5.992)}


def parcel_boxes() -> dict[int, shapely.Polygon]:
    return {pid: shapely.box(x - HALF_W, y - HALF_H, x + HALF_W, y + HALF_H) for pid, (x, y, _c) in PARCELS.items()}


def write_parcels(path) -> None:
    """SYNTHETIC parcels as a GeoPackage in EPSG:3035 (LAEA Europe, a national-style CRS)."""
    to3035 = Transformer.from_crs(4326, 3035, always_xy=True)
    drv = ogr.GetDriverByName("GPKG")
    ds = drv.CreateDataSource(str(path))
    srs = osr.SpatialReference()
    srs.ImportFromEPSG(3035)
    lyr = ds.CreateLayer("parcels", srs, ogr.wkbPolygon)
    lyr.CreateField(ogr.FieldDefn("crop", ogr.OFTString))
    lyr.CreateField(ogr.FieldDefn("name", ogr.OFTString))
    for pid, box in parcel_boxes().items():
        f = ogr.Feature(lyr.GetLayerDefn())
        f.SetFID(pid)
        f.SetField("crop", PARCELS[pid][2])
        f.SetField("name", f"SYNTHETIC parcel {pid} (it's a test)")
        g = shapely.transform(shapely.segmentize(box, 0.0002), lambda xy: np.column_stack(to3035.transform(*xy.T)))
        f.SetGeometry(ogr.CreateGeometryFromWkb(g.wkb))
        lyr.CreateFeature(f)
    ds = None


def grid_over(epsg: int, res: float, margin: float = 300.0) -> tuple[float, float, int, int]:
    """Upper-left corner on the 60 m lattice and size of a grid covering all parcels."""
    tr = Transformer.from_crs(4326, epsg, always_xy=True)
    xs, ys = [], []
    for box in parcel_boxes().values():
        x, y = tr.transform(*np.asarray(box.exterior.coords).T)
        xs += list(x)
        ys += list(y)
    x0 = np.floor((min(xs) - margin) / 60) * 60
    y0 = np.ceil((max(ys) + margin) / 60) * 60
    return x0, y0, int(np.ceil((max(xs) + margin - x0) / res)), int(np.ceil((y0 - min(ys) + margin) / res))


def validity(epsg: int, x0: float, y0: float, w: int, h: int, res: float, rule) -> np.ndarray:
    tr = Transformer.from_crs(epsg, 4326, always_xy=True)
    cx, cy = np.meshgrid(x0 + res * (np.arange(w) + 0.5), y0 - res * (np.arange(h) + 0.5))
    lon, lat = tr.transform(cx, cy)
    return rule(lon, lat)


def s2_bands(epsg: int, rule, seed: int) -> tuple[float, float, dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    x0, y0, w, h = grid_over(epsg, 20.0)
    out = {}
    for band, res in (("B02", 10), ("B03", 10), ("B04", 10), ("B08", 10), ("B05", 20), ("B11", 20), ("SCL", 20)):
        k = 20 // res
        ok = validity(epsg, x0, y0, w * k, h * k, res, rule)
        if band == "SCL":
            tr = Transformer.from_crs(epsg, 4326, always_xy=True)
            cx, _ = np.meshgrid(x0 + res * (np.arange(w * k) + 0.5), y0 - res * (np.arange(h * k) + 0.5))
            lon, _ = tr.transform(cx, np.full_like(cx, y0))
            arr = np.where(lon > 6.003, 9, 4).astype(np.uint8)        # clouds over the east part
        else:
            arr = rng.integers(800, 6000, (h * k, w * k)).astype(np.uint16)
        arr[~ok] = 0
        out[band] = arr
    return x0, y0, out


def build_overlap_aoi(db_url: str, tmp: Path) -> tuple[AoiConfig, dict, dict[str, int]]:
    """The SYNTHETIC overlapping-granules AOI imported, harvested, rasterized and extracted end to end
    in a new schema; returns (cfg, arrays by product, obsid by reference)."""
    import uuid

    schema = "t_canon_" + uuid.uuid4().hex[:8]
    eodata = tmp / "eodata"
    eodata.mkdir()
    write_parcels(tmp / "parcels.gpkg")
    cfg = AoiConfig(name="canon", schema=schema, start_date=dt.date(2023, 1, 1), cards=("s2", "bs"),
                    parcels={"source": str(tmp / "parcels.gpkg"), "layer": "parcels", "crop_column": "crop"},
                    catalogue={"source": "offline", "path": str(tmp / "catalogue")}, store={"root": str(eodata)})
    arrays: dict[str, tuple[int, Affine, dict[str, np.ndarray]]] = {}
    s2_feats, s1_feats = [], []
    for tile, (epsg, rule) in S2_GRANULES.items():
        x0, y0, bands = s2_bands(epsg, rule, seed=1 if tile in ("31UGR", "31UGS") else 2)
        name = write_s2_safe(eodata, T, x0, y0, bands, tile=tile, epsg=epsg)
        arrays[name] = (epsg, Affine(10, 0, x0, 0, -10, y0), bands)
        s2_feats.append(resto_feature(name + ".SAFE", T, "L2A", f"/eodata/Sentinel-2/MSI/L2A/2023/06/01/{name}.SAFE",
                                      (5.9, 50.45, 6.1, 50.55)))
    rng = np.random.default_rng(5)
    for dts, (epsg, rule) in S1_SLICES.items():
        t = T1 + dt.timedelta(seconds=dts)
        x0, y0, w, h = grid_over(epsg, 10.0)
        ok = validity(epsg, x0, y0, w, h, 10.0, rule)
        vv = np.where(ok, rng.gamma(2.0, 0.04, (h, w)), 0).astype(np.float32)
        vh = np.where(ok, rng.gamma(2.0, 0.01, (h, w)), 0).astype(np.float32)
        ref = write_card_bs(eodata, t, x0, y0, 10.0, {"VV": vv, "VH": vh}, epsg=epsg)
        arrays[ref] = (epsg, Affine(10, 0, x0, 0, -10, y0), {"VVb": vv, "VHb": vh})
        box = (5.9, 50.45, 6.005, 50.55) if epsg == 32631 else (5.99, 50.45, 6.1, 50.55)
        s1_feats.append(resto_feature(ref, t, "CARD-BS", f"/eodata/Sentinel-1/SAR/CARD-BS/2023/06/02/{ref}", box))
    write_catalogue(tmp / "catalogue" / "s2.json", s2_feats)
    write_catalogue(tmp / "catalogue" / "s1.json", s1_feats)
    import_parcels(db_url, cfg)
    assert harvest(db_url, cfg, dt.datetime(2023, 1, 1), dt.datetime(2024, 1, 1)).inserted == 5
    rasterize_aoi(db_url, cfg)
    for stage in cfg.stages:
        out = run_queue(db_url, cfg, stage)
        assert set(out["by_status"]) == {"extracted"}, (stage, out["by_status"])
    with psycopg.connect(db_url) as c:
        obsids = dict(c.execute(f'SELECT reference, id FROM "{schema}".dias_catalogue'))
    return cfg, arrays, obsids


def expected_counts(db_url, cfg, arrays) -> dict[int, dict[str, dict[str, int]]]:
    """{pid: {reference: {"scl": n, "max": n}}}: valid pixels under each parcel, per product,
    from the synthetic arrays and pixel-centre masks of the stored parcel geometries."""
    out: dict[int, dict[str, dict[str, int]]] = {}
    with psycopg.connect(db_url) as c:
        for ref, (epsg, t10, bands) in arrays.items():
            geoms = dict(c.execute(f'SELECT ogc_fid, ST_AsBinary(ST_Transform(wkb_geometry, {epsg})) '
                                   f'FROM "{cfg.schema}".parcels'))
            for pid, wkb in geoms.items():
                g = shapely.from_wkb(bytes(wkb))
                counts = {}
                for band, arr in bands.items():
                    res = 20 if band in ("SCL", "B05", "B11") else 10
                    t = Affine(res, 0, t10.c, 0, -res, t10.f)
                    inside = ~geometry_mask([g], out_shape=arr.shape, transform=t)
                    counts[band] = int((inside & (arr != 0)).sum())
                if any(counts.values()):
                    out.setdefault(pid, {})[ref] = {"scl": counts.get("SCL", 0),
                                                    "max": max(v for k, v in counts.items() if k != "SCL")}
    return out


def expected_canonical(cands: dict[str, dict[str, int]]) -> str:
    """The documented rule in Python: most SCL pixels, most band pixels, (same baseline), smallest name."""
    return sorted(cands, key=lambda ref: (-cands[ref]["scl"], -cands[ref]["max"], ref))[0]


def set_aoi(url: str, cfg: AoiConfig, wkt: str) -> None:
    """An AOI row with this outline (EPSG:4326 WKT) and no parcels: the harvest tests need no parcel set."""
    from cbm_ops.db import ensure_schema, q, transaction

    ensure_schema(url, cfg.schema, pid_indexes=cfg.pid_indexes)
    with transaction(url) as conn:
        conn.execute(q("aoi_set", schema=cfg.schema),
                     {"name": cfg.name, "wkt": wkt, "table": None, "srid": None, "version": None})
