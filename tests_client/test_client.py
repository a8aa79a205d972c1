"""Every API-calling function of the JRC's ``cbm`` client (0.0.18, unchanged) on the demo data.

One run of tests_client/client_driver.py in the client's own venv (conftest.py); each test
checks what the client returned or wrote against the database, the sample's band files or
the weather CSV. The plots are rendered headless (Agg) into client-test-output/figures and
checked to be drawn (axes, non-blank pixels).
"""

from __future__ import annotations

import csv
import json
import time
from pathlib import Path

import numpy as np
import psycopg
import pytest
import rasterio
import requests
from conftest import AOI, GRID_PID, LATER, OUT, PASSWORD, PID, ROOT, USER, WINDOW, YEAR

WORK = OUT / "client-work"


def ok(run: dict, name: str) -> dict:
    rec = run[name]
    assert rec["ok"], f"{name}: {rec.get('error')}"
    return rec["result"]


def s2_datatakes(db_url: str, schema: str, start: str, end: str) -> list[str]:
    """The S2 products of the sample sensed from ``start`` to ``end`` (included), by time."""
    with psycopg.connect(db_url) as c:
        return [r[0] for r in c.execute(f'SELECT reference FROM "{schema}".dias_catalogue WHERE card = %s AND '
                                        "obstime >= %s::date AND obstime < %s::date + 1 ORDER BY obstime",
                                        ("s2", start, end))]


def drawn(path: str) -> bool:
    from matplotlib.image import imread

    img = imread(path)
    return img.shape[0] > 100 and float(img[..., :3].std()) > 0.02


# ----------------------------------------------------------------- parcel information
def test_info_and_parcel_information(client_run, demo, db_url):
    cfg, _ = demo
    info = ok(client_run, "datas.api.get_options")["json"]["aois"][AOI]
    examples = next(v for k, v in info.items() if k.startswith("id_examples"))
    assert info["years"] == ["2017", "2018"] and examples[0] == "1"        # what the client GUI reads
    p = ok(client_run, "get.parcel_info.by_pid")["dict"]
    with psycopg.connect(db_url) as c:
        lon, lat, area = c.execute(
            f'SELECT ST_X(ST_Transform(ST_Centroid(wkb_geometry), 4326)), ST_Y(ST_Transform(ST_Centroid(wkb_geometry), '
            f'4326)), ST_Area(ST_Transform(wkb_geometry, 4326)::geography) FROM "{cfg.schema}".parcels '
            "WHERE ogc_fid = %s", (PID,)).fetchone()
    assert (p["pid"], p["cropname"], p["cropcode"], p["srid"]) == (["1"], ["Maize"], ["1200"], [32631])
    assert (p["clon"][0], p["clat"][0], p["area"][0]) == pytest.approx((lon, lat, area))
    saved = json.loads((WORK / f"temp/{AOI}/{YEAR}/{PID}/info.json").read_text())
    assert saved["pid"] == ["1"] and json.loads(saved["geom"][0])["type"] == "MultiPolygon"
    at = ok(client_run, "get.parcel_info.by_location")["dict"]
    assert at["pid"][0] == "1" and "11" in at["pid"]             # the LPIS parcel lies inside maize region 11
    wgs = ok(client_run, "datas.api.parcel_by_id(wgs84)")["json"]
    x, y = json.loads(wgs["geom"][0])["coordinates"][0][0][0]
    assert abs(x - lon) < 0.01 and abs(y - lat) < 0.01


def test_polygon_and_peers(client_run, demo, db_url, parcel):
    cfg, _ = demo
    ring = "POLYGON((" + ", ".join(f"{x} {y}" for x, y in parcel["ring"]) + "))"
    with psycopg.connect(db_url) as c:
        inside = [str(r[0]) for r in c.execute(
            f'SELECT ogc_fid FROM "{cfg.schema}".parcels WHERE ST_Intersects(wkb_geometry, ST_Transform('
            "ST_GeomFromText(%s, 4326), 32631)) ORDER BY 1", (ring,))]
        peers = c.execute(
            f"""SELECT q.ogc_fid, ST_Distance(ST_Transform(p.wkb_geometry, 4326)::geography,
                                              ST_Transform(q.wkb_geometry, 4326)::geography) AS d
                FROM "{cfg.schema}".parcels p, "{cfg.schema}".parcels q
                WHERE p.ogc_fid = %s AND q.ogc_fid <> p.ogc_fid AND q.ct_name = p.ct_name
                  AND ST_Area(ST_Transform(q.wkb_geometry, 4326)::geography) > 3000
                ORDER BY d, 1""", (PID,)).fetchall()
    assert ok(client_run, "get.parcel_info.by_polygon")["json"] == {"pid": inside} and len(inside) > 1
    got = ok(client_run, "get.parcels_list.peers")["dict"]
    near = [(p, d) for p, d in peers if d <= 1000.0][:10]
    assert got["pids"] == [p for p, _ in near] and got["distance"] == pytest.approx([d for _, d in near], abs=1e-3)


# ----------------------------------------------------------------- time series and weather
def test_time_series(client_run, demo, db_url):
    cfg, _ = demo
    with psycopg.connect(db_url) as c:
        n_s2 = c.execute(f"""SELECT count(*) FROM "{cfg.schema}".sigs s JOIN "{cfg.schema}".dias_catalogue d
                             ON d.id = s.obsid JOIN "{cfg.schema}".hists h ON h.obsid = s.obsid AND h.pid = s.pid
                             WHERE s.pid = %s AND d.card = 's2' AND d.obstime >= '2018-01-01'
                               AND d.obstime < '2019-01-01'""", (PID,)).fetchone()[0]
        n_bs = c.execute(f"""SELECT count(*) FROM "{cfg.schema}".sigs s JOIN "{cfg.schema}".dias_catalogue d
                             ON d.id = s.obsid WHERE s.pid = %s AND d.card = 'bs' AND d.obstime >= '2018-01-01'
                               AND d.obstime < '2019-01-01'""", (PID,)).fetchone()[0]
    s2 = ok(client_run, "get.time_series.by_pid(s2)")["dict"]
    assert len(s2["band"]) == n_s2 > 300 and all(isinstance(h, dict) and h for h in s2["hist"])
    assert s2["date_part"] == sorted(s2["date_part"])
    b4 = ok(client_run, "get.time_series.by_pid(s2,B04)")["dict"]
    assert set(b4["band"]) == {"B04"} and len(b4["band"]) == n_s2 // 6        # 6 bands per date in the demo
    bs = ok(client_run, "get.time_series.by_pid(bs)")["dict"]
    assert len(bs["band"]) == n_bs and bs["band"].count("VVb") == bs["band"].count("VHb") > 100
    assert ok(client_run, "get.time_series.by_pid(c6)")["dict"]["band"] == []    # no CARD-COH6 in the sample
    scl = ok(client_run, "get.time_series.by_pid(scl)")["dict"]
    assert len(scl["hist"]) == n_s2 // 6
    written = list(csv.DictReader((WORK / f"temp/{AOI}/{YEAR}/{PID}/time_series_s2.csv").open()))
    assert len(written) == n_s2 and written[0]["hist"].startswith("{")


def test_weather(client_run):
    rows = [r for r in csv.DictReader((ROOT / "include/meteo/demo_flanders_agera5.csv").open())
            if r["date"].startswith("2018")]
    w = ok(client_run, "get.time_series.weather")["dict"]
    assert w["meteo_date"] == [r["date"] for r in rows]
    assert w["tmean"] == pytest.approx([float(r["tmean"]) for r in rows], abs=1e-4)
    assert w["prec"] == pytest.approx([float(r["prec"]) for r in rows], abs=1e-4)


# ----------------------------------------------------------------- backgrounds and chips
def test_backgrounds_from_the_local_tile_server(client_run, tiles):
    assert ok(client_run, "get.background.by_pid")["repr"] == "None"           # the client returns nothing ...
    for path in (f"temp/{AOI}/{YEAR}/{PID}/backgrounds/osm.tif", f"temp/{AOI}/{YEAR}/{PID}/backgrounds/google.tif"):
        with rasterio.open(WORK / path) as ds:                                  # ... and writes the GeoTIFF
            assert ds.crs.to_epsg() == 3857 and ds.count == 3 and ds.read().std() > 5
    assert sum(tiles.hits.values()) > 0


def test_no_outside_requests(client_run):
    """The only request outside 127.0.0.1 was the client's own PyPI version check at import (blocked)."""
    outside = client_run["files"]["result"]["outside"]
    assert len(outside) == 1 and outside[0].startswith("https://pypi.org/pypi/")


def _mask(path: Path, lon: float, lat: float, size: float) -> np.ndarray:
    """The JRC's chip of a band file: rasterio.mask of the square (all_touched=False), cropped to the kept pixels."""
    import rasterio.mask
    import shapely
    from pyproj import Transformer

    with rasterio.open(path) as ds:
        x, y = Transformer.from_crs(4326, ds.crs.to_epsg(), always_xy=True).transform(lon, lat)
        arr, _ = rasterio.mask.mask(ds, [shapely.box(x - size / 2, y - size / 2, x + size / 2, y + size / 2)],
                                    crop=True, all_touched=False, filled=False)
    rows, cols = np.where(~arr.mask[0])
    return arr.data[0][rows.min():rows.max() + 1, cols.min():cols.max() + 1]


def test_chip_downloads_are_the_band_files_pixels(client_run, demo, db_url, parcel):
    cfg, _ = demo
    refs = s2_datatakes(db_url, cfg.schema, *WINDOW)
    assert ok(client_run, "get.chip_images.by_location")["repr"] == "None"
    folder = WORK / f"temp/{parcel['lon']}_{parcel['lat']}".replace(".", "_") / "chip_images"
    assert sorted(p.name for p in folder.glob("*.B04.tif")) == sorted(f"{r}.B04.tif" for r in refs) and len(refs) == 9
    listed = list(csv.DictReader((folder / "images_list.B04.csv").open()))
    assert [r["dates"] for r in listed] == [r.split("_")[2] for r in refs]
    for ref in refs[:3]:
        src = next(cfg.resolve(cfg.store.root).glob(f"Sentinel-2/**/{ref}.SAFE/GRANULE/*/IMG_DATA/R10m/*_B04_10m.jp2"))
        with rasterio.open(folder / f"{ref}.B04.tif") as ds:
            np.testing.assert_array_equal(ds.read(1), _mask(src, parcel["lon"], parcel["lat"], 400))
    ok(client_run, "get.chip_images.by_pid")
    pid_dir = WORK / f"temp/{AOI}/{YEAR}/{PID}/chip_images"
    assert len(list(pid_dir.glob("*.B08.tif"))) == len(refs)
    for name in ("datas.api.cbl", "datas.api.cbl(lut=None)"):
        page = ok(client_run, name)
        assert page["status"] == 200 and page["imgs"] == len(refs) and page["content_type"].startswith("text/html")


# ----------------------------------------------------------------- plots
PLOTS = {"show.parcel_info.by_pid": 2, "show.time_series.ndvi": 1, "show.time_series.ndvi(peers)": 1,
         "show.time_series.s2": 1, "show.time_series.s1(bs)": 1, "show.time_series.weather": 2,
         "show.background.by_pid": None, "show.background.by_location": None,
         "show.chip_images.by_pid(B04)": 9, "show.chip_images.by_pid(ndvi)": 9,
         "show.chip_images.by_pid(true_color)": 9, "show.chip_images.by_location(ndvi)": 9,
         "show.chip_images.grid(B08)": 9}


@pytest.mark.parametrize("name", sorted(PLOTS))
def test_every_plot_is_drawn(client_run, name):
    fig = ok(client_run, name)
    if PLOTS[name] is not None:
        assert fig["axes"] == PLOTS[name], fig
    assert Path(fig["figure"]).exists() and drawn(fig["figure"]), fig


def test_a_later_window_adds_only_its_new_chips(client_run, demo, db_url):
    """show.chip_images.by_pid again with a later window: the client asks only for the days it lacks and
    merges its chip lists (pandas < 2's DataFrame.append); every date of both windows is drawn once."""
    cfg, _ = demo
    dates = sorted(set(s2_datatakes(db_url, cfg.schema, *WINDOW)) | set(s2_datatakes(db_url, cfg.schema, *LATER)))
    fig = ok(client_run, "show.chip_images.by_pid(B04,later)")
    assert fig["axes"] == len(dates) and drawn(fig["figure"])


def test_s1_plot_of_a_card_without_data(client_run):
    """The demo sample has no CARD-COH6 product: the c6 series is empty and the client's s1 plot cannot draw
    an empty series (its own IndexError), as with the JRC server."""
    rec = client_run["show.time_series.s1(c6)"]
    assert not rec["ok"] and rec["error"].startswith("IndexError")


def test_grid_uses_the_configured_ptype(client_run):
    info = json.loads((WORK / f"temp/{AOI}/{YEAR}/{GRID_PID}/info.json").read_text())
    assert info["pid"] == [str(GRID_PID)]


# ----------------------------------------------------------------- chip latency (recorded, not a target)
def test_chip_latency_is_recorded(api_url, parcel, client_run):
    """Wall time of rawChipByLocation (9 datatakes of June 2018, B02) cold and cached, over HTTP; written to
    client-test-output/chip_latency.json for the report (targets belong to make bench)."""
    q = {"lon": parcel["lon"] + 0.0005, "lat": parcel["lat"], "start_date": WINDOW[0], "end_date": WINDOW[1],
         "band": "B02", "chipsize": 1280}
    times = []
    for _ in range(3):
        t0 = time.perf_counter()
        r = requests.get(f"{api_url}/query/rawChipByLocation", params=q, auth=(USER, PASSWORD), timeout=120)
        times.append(time.perf_counter() - t0)
        assert r.status_code == 200 and len(r.json()["chips"]) == 9
    t0 = time.perf_counter()
    for c in r.json()["chips"]:
        assert requests.get(api_url + c, timeout=30).status_code == 200
    (OUT / "chip_latency.json").write_text(json.dumps({"chips": 9, "cold_s": times[0], "cached_s": times[1:],
                                                       "download_9_files_s": time.perf_counter() - t0}, indent=1))
