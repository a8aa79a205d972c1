"""``make test-client``: the JRC's ``cbm`` client (0.0.18, unchanged) against the standalone API.

Session fixtures, all started here and stopped at the end:

* the client's own venv ``.venv-client`` (``cbm==0.0.18`` with ``pandas<2`` and ``numpy<2``:
  the client's ``rcbl`` merges chip lists with ``DataFrame.append``, removed in pandas 2;
  ``setuptools`` for its ``pkg_resources`` import), kept between runs while the pins stay;
* a throwaway PostGIS with the demo AOI of the bundled REAL sample, harvested and extracted
  in full (118 S2 L2A, 159 CARD-BS scenes; about a minute) and the REAL AgERA5 weather of
  the patch imported with ``cbm import-meteo``;
* a local tile server (``tests/api/tile_server.py``) of a real Sentinel-2 true colour of the sample,
  configured as the AOI's ``osm`` and ``google`` backgrounds;
* a JRC-format users file written by ``cbm api-user add``;
* the standalone API under uvicorn on a free port, configured only from the environment;
* one run of :mod:`client_driver` in the client venv (headless matplotlib), whose results
  the tests check against the database.

Output (figures, the client's working directory, the API log) stays in
``client-test-output/``.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "api"))          # tile_server.py, shared with tests/api/test_jrc.py
OUT = ROOT / "client-test-output"
CLIENT_VENV = ROOT / ".venv-client"
CLIENT_PINS = ["cbm==0.0.18", "pandas<2", "numpy<2", "setuptools"]
AOI = "demo_flanders"
USER, PASSWORD = "ana", "client-test-" + os.urandom(6).hex()
YEAR, PID = 2018, 1
WINDOW, LATER = ("2018-06-01", "2018-06-30"), ("2018-06-20", "2018-07-15")
GRID_PID = 5                         # show.chip_images.grid asks for ptype g (configured: the AOI's own parcels)


@pytest.fixture(scope="session")
def client_python() -> Path:
    """The client venv's Python (created once, re-created when the pins change)."""
    stamp = CLIENT_VENV / ".pins"
    py = CLIENT_VENV / "bin" / "python"
    if not py.exists() or not stamp.exists() or stamp.read_text() != " ".join(CLIENT_PINS):
        shutil.rmtree(CLIENT_VENV, ignore_errors=True)
        subprocess.run([sys.executable, "-m", "venv", str(CLIENT_VENV)], check=True)
        subprocess.run([str(py), "-m", "pip", "install", "-q", *CLIENT_PINS], check=True)
        stamp.write_text(" ".join(CLIENT_PINS))
    return py


@pytest.fixture(scope="session")
def db_url():
    from cbm_ops.db.devdb import TempPostgis

    pg = TempPostgis.start(dbname="cbm_client")
    try:
        yield pg.url
    finally:
        pg.stop()


@pytest.fixture(scope="session")
def tiles(tmp_path_factory):
    """The local tile server of a real sample product (a cloud-free summer date over the patch)."""
    from tile_server import TileServer, true_colour

    product = next((ROOT / "include/sample/eodata/Sentinel-2/MSI/L2A/2018/06/30").glob("*.SAFE"))
    server = TileServer(true_colour(product, tmp_path_factory.mktemp("tiles") / "true_colour.tif"))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def demo(db_url, tiles, tmp_path_factory):
    """(AoiConfig, AOI directory): the demo AOI with backgrounds and a ptype, fully extracted, weather imported."""
    from cbm_ops.analyst.meteo import import_meteo
    from cbm_ops.config import load_aoi
    from cbm_ops.extract import run_queue
    from cbm_ops.harvest import harvest
    from cbm_ops.parcels import import_parcels

    data = yaml.safe_load((ROOT / "include" / "aois" / f"{AOI}.yaml").read_text())
    data["jrc"] = {"backgrounds": {name: {"url": tiles.template, "max_zoom": 19, "attribution": "test tiles"}
                                   for name in ("osm", "google")}, "ptypes": {"g": AOI}}
    for k in ("parcels.source", "catalogue.path", "store.root"):
        sect, key = k.split(".")
        data[sect][key] = str(ROOT / data[sect][key])
    d = tmp_path_factory.mktemp("aois")
    (d / f"{AOI}.yaml").write_text(yaml.safe_dump(data))
    cfg = load_aoi(d / f"{AOI}.yaml")
    import_parcels(db_url, cfg)
    harvest(db_url, cfg, dt.datetime(2017, 8, 1), dt.datetime(2018, 12, 1))
    for stage in cfg.stages:
        run_queue(db_url, cfg, stage)
    import_meteo(db_url, cfg, ROOT / "include" / "meteo" / "demo_flanders_agera5.csv")
    return cfg, d


@pytest.fixture(scope="session")
def users_file(tmp_path_factory) -> Path:
    """A JRC-format users file with one user of the demo AOI, written by the CLI."""
    path = tmp_path_factory.mktemp("users") / "users.json"
    subprocess.run([sys.executable, "-m", "cbm_ops", "api-user", "add", USER, "--file", str(path), "--aoi", AOI,
                    "--password-stdin"], input=PASSWORD + "\n", text=True, check=True, capture_output=True)
    return path


@pytest.fixture(scope="session")
def api_url(demo, db_url, users_file):
    """The standalone API under uvicorn (a subprocess), configured from the environment only."""
    from cbm_ops.db.devdb import free_port

    _, aoi_dir = demo
    OUT.mkdir(exist_ok=True)
    shutil.rmtree(OUT / "chips-cache", ignore_errors=True)      # every run cuts its chips (cold latency)
    port = free_port()
    env = {**os.environ, "CBM_AOI_DIR": str(aoi_dir), "CBM_DB_URL": db_url, "CBM_API_USERS_FILE": str(users_file),
           "CBM_CHIPS_DIR": str(OUT / "chips-cache"), "PYTHONPATH": str(ROOT / "plugins")}
    for k in ("CBM_API_TOKENS", "CBM_API_USERS", "CBM_API_NO_AUTH"):
        env.pop(k, None)
    log = open(OUT / "api.log", "w")    # noqa: SIM115 - closed below
    proc = subprocess.Popen([sys.executable, "-m", "uvicorn", "--factory", "cbm_api:create_standalone_app",
                             "--host", "127.0.0.1", "--port", str(port)], env=env, stdout=log, stderr=log)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait(url, proc)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()


def _wait(url: str, proc: subprocess.Popen) -> None:
    import requests

    for _ in range(300):
        if proc.poll() is not None:
            raise RuntimeError(f"the API exited ({proc.returncode}); see {OUT / 'api.log'}")
        try:
            requests.get(f"{url}/openapi.json", timeout=2)
            return
        except requests.ConnectionError:
            time.sleep(0.2)
    raise RuntimeError("the API did not start within 60 s")


@pytest.fixture(scope="session")
def parcel(demo, db_url) -> dict:
    """The demo parcel's centroid and the ring of a small polygon around it (the client GUI's format)."""
    cfg, _ = demo
    with psycopg.connect(db_url) as c:
        lon, lat = c.execute(f'SELECT ST_X(g), ST_Y(g) FROM (SELECT ST_Transform(ST_Centroid(wkb_geometry), 4326) g '
                             f'FROM "{cfg.schema}".parcels WHERE ogc_fid = %s) x', (PID,)).fetchone()
    d = 0.001
    ring = [(lon - d, lat - d), (lon + d, lat - d), (lon + d, lat + d), (lon - d, lat + d), (lon - d, lat - d)]
    return {"lon": lon, "lat": lat, "polygon": "-".join(f"{x}_{y}" for x, y in ring), "ring": ring}


@pytest.fixture(scope="session")
def client_run(client_python, api_url, parcel, tmp_path_factory) -> dict[str, dict]:
    """One run of the client driver: {call name: record}."""
    work = OUT / "client-work"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    params = {"url": api_url, "user": USER, "password": PASSWORD, "aoi": AOI, "year": YEAR, "pid": PID,
              "peers": [11, 16], "grid_pid": GRID_PID, "lon": parcel["lon"], "lat": parcel["lat"],
              "polygon": parcel["polygon"], "window": list(WINDOW), "later": list(LATER),
              "figures": str(OUT / "figures")}
    (work / "params.json").write_text(json.dumps(params))
    env = {**os.environ, "MPLBACKEND": "Agg"}
    env.pop("PYTHONPATH", None)
    res = subprocess.run([str(client_python), str(Path(__file__).parent / "client_driver.py"), "params.json",
                          "results.json"], cwd=work, env=env, capture_output=True, text=True, timeout=1200)
    (OUT / "client.log").write_text(res.stdout + res.stderr)
    assert res.returncode == 0, res.stderr[-3000:]
    records = json.loads((work / "results.json").read_text())
    (OUT / "results.json").write_text(json.dumps(records, indent=1))
    return {r["name"]: r for r in records}
