"""Export (cbm_ops/export.py): canonical signatures to Parquet/CSV and parcels to GeoParquet,
read back with pyarrow and compared with the database, on the SYNTHETIC overlapping granules
of tests/synthetic.py (build_overlap_aoi; so only canonical observations may appear)."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import psycopg
import pyarrow.parquet as pq
import pytest
import shapely
import yaml
from conftest import ROOT
from synthetic import PARCELS, expected_canonical, expected_counts

from cbm_ops.analyst.export import SIGS_COLUMNS, export
from cbm_ops.cli import main


def db_rows(db_url, cfg, pairs):
    """sigs rows of the given (pid, obsid) pairs, straight from the table."""
    with psycopg.connect(db_url) as c:
        rows = c.execute(f'SELECT pid, obsid, trim(band), count, mean, std, min, max, p25, p50, p75 '
                         f'FROM "{cfg.schema}".sigs').fetchall()
    return {(r[0], r[1], r[2]): r[3:] for r in rows if (r[0], r[1]) in pairs}


def test_parquet_and_csv_hold_the_canonical_signatures(db_url, overlap_aoi, tmp_path):  # noqa: F811
    cfg, arrays, obsids = overlap_aoi
    exp = expected_counts(db_url, cfg, arrays)
    canonical = set()
    for pid in PARCELS:
        for prefix in ("S2", "S1"):
            cands = {r: v for r, v in exp[pid].items() if r.startswith(prefix)}
            if cands:
                canonical.add((pid, obsids[expected_canonical(cands)]))
    expect = db_rows(db_url, cfg, canonical)
    res = export(db_url, cfg, 2023, "parquet", tmp_path)
    assert res["rows"] == len(expect) > 0 and res["parcel_count"] == len(PARCELS)
    table = pq.read_table(res["sigs"])
    assert table.schema.names == list(SIGS_COLUMNS) and table.num_rows == len(expect)
    got = {(r["pid"], r["obsid"], r["band"]): r for r in table.to_pylist()}
    assert set(got) == set(expect)                              # only canonical observations, all their bands
    for key, values in expect.items():
        r = got[key]
        assert [r[c] for c in SIGS_COLUMNS[12:]] == pytest.approx(list(values), rel=1e-7)
    with psycopg.connect(db_url) as c:
        meta = {i: (t, ca.strip(), tile, ep) for i, t, ca, tile, ep in c.execute(
            f'SELECT id, obstime, card, tile, epsg FROM "{cfg.schema}".dias_catalogue')}
        clear = dict(((p, o), cf) for p, o, cf in c.execute(
            f'SELECT pid, obsid, cloudfree FROM "{cfg.schema}".parcel_observations'))
    for r in got.values():
        assert (r["obstime"], r["card"], r["tile"], r["epsg"]) == meta[r["obsid"]]
        assert r["cloudfree"] == clear[(r["pid"], r["obsid"])]
    assert {r["datatake"] for r in got.values()} == {"s2:2B:20230601T105621", "bs:1A:021474_024F9D"}
    # CSV: the same rows and values
    res_csv = export(db_url, cfg, 2023, "csv", tmp_path)
    with open(res_csv["sigs"], newline="") as f:
        rows = list(csv.DictReader(f))
    assert res_csv["rows"] == len(rows) == len(expect)
    for r in rows:
        g = got[(int(r["pid"]), int(r["obsid"]), r["band"])]
        assert float(r["mean"]) == pytest.approx(g["mean"], rel=1e-7) and r["datatake"] == g["datatake"]
        assert r["cloudfree"] == ("" if g["cloudfree"] is None else str(g["cloudfree"]).lower())
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [f"{cfg.name}_2023_sigs.parquet", f"{cfg.name}_2023_sigs.csv", f"{cfg.name}_parcels.parquet"])   # no temp


def test_geoparquet_parcels(db_url, overlap_aoi, tmp_path):  # noqa: F811
    cfg, _arrays, _obsids = overlap_aoi
    with psycopg.connect(db_url) as c:      # the file's own "pid" and "geometry" attributes are kept
        c.execute(f'ALTER TABLE "{cfg.schema}".parcels ADD COLUMN pid integer, ADD COLUMN geometry text')
        c.execute(f"UPDATE \"{cfg.schema}\".parcels SET pid = 9000 + ogc_fid, geometry = 'field ' || ogc_fid")
    try:
        res = export(db_url, cfg, 2023, "parquet", tmp_path)
    finally:
        with psycopg.connect(db_url) as c:
            c.execute(f'ALTER TABLE "{cfg.schema}".parcels DROP COLUMN pid, DROP COLUMN geometry')
    pf = pq.ParquetFile(res["parcels"])
    geo = json.loads(pf.metadata.metadata[b"geo"])
    col = geo["columns"]["geometry"]
    assert geo["primary_column"] == "geometry" and geo["version"].startswith("1.")
    assert col["encoding"] == "WKB" and col["crs"]["id"] == {"authority": "EPSG", "code": 3035}
    assert set(col["geometry_types"]) <= {"Polygon", "MultiPolygon"} and len(col["bbox"]) == 4
    table = pf.read()
    with psycopg.connect(db_url) as c:
        want = {r[0]: (bytes(r[1]), r[2], r[3]) for r in c.execute(
            f'SELECT ogc_fid, ST_AsBinary(wkb_geometry), crop, name FROM "{cfg.schema}".parcels')}
    got = {r["pid"]: r for r in table.to_pylist()}
    assert set(got) == set(want) == set(PARCELS)
    for pid, (wkb, crop, name) in want.items():
        assert shapely.from_wkb(got[pid]["geometry"]).equals_exact(shapely.from_wkb(wkb), 0)
        assert (got[pid]["crop"], got[pid]["name"]) == (crop, name)
        assert (got[pid]["attr_pid"], got[pid]["attr_geometry"]) == (9000 + pid, f"field {pid}")
    x0, y0, x1, y1 = col["bbox"]
    for g in (shapely.from_wkb(r["geometry"]) for r in got.values()):
        gx0, gy0, gx1, gy1 = g.bounds
        assert x0 <= gx0 and y0 <= gy0 and gx1 <= x1 and gy1 <= y1


def test_empty_year_and_bad_input(db_url, overlap_aoi, tmp_path):  # noqa: F811
    cfg, _arrays, _obsids = overlap_aoi
    res = export(db_url, cfg, 2020, "parquet", tmp_path)
    assert res["rows"] == 0 and res["datatakes"] == 0
    t = pq.read_table(res["sigs"])
    assert t.num_rows == 0 and t.schema.names == list(SIGS_COLUMNS)
    with pytest.raises(ValueError, match="format"):
        export(db_url, cfg, 2023, "xlsx", tmp_path)
    with pytest.raises(ValueError, match="year"):
        export(db_url, cfg, 1999, "csv", tmp_path)


def aoi_yaml(cfg, directory: Path, **maintenance) -> Path:
    data = cfg.model_dump(mode="json", by_alias=True, exclude_defaults=True)
    data["maintenance"] = {**data.get("maintenance", {}), **maintenance}
    path = directory / f"{cfg.name}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_cli_export(db_url, overlap_aoi, tmp_path, capsys):  # noqa: F811
    cfg, _arrays, _obsids = overlap_aoi
    path = aoi_yaml(cfg, tmp_path)
    out = tmp_path / "out"
    assert main(["export", "--aoi", str(path), "--db-url", db_url, "--year", "2023", "--format", "csv",
                 "--out-dir", str(out)]) == 0
    res = json.loads(capsys.readouterr().out)
    assert Path(res["sigs"]).name == f"{cfg.name}_2023_sigs.csv" and res["rows"] > 0
    with pytest.raises(SystemExit):
        main(["export", "--aoi", str(path), "--db-url", db_url, "--year", "1999"])


@pytest.mark.airflow
def test_maintenance_dag_exports_when_configured(db_url, overlap_aoi, tmp_path):  # noqa: F811
    """`airflow dags test` of the AOI's maintenance DAG (own Airflow home, in a subprocess)."""
    cfg, _arrays, _obsids = overlap_aoi
    aois = tmp_path / "aois"
    aois.mkdir()
    aoi_yaml(cfg, aois, export_dir=str(tmp_path / "export"), schedule=None)
    env = {**os.environ, "AIRFLOW_HOME": str(tmp_path / "airflow"), "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
           "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"), "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins"),
           "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{tmp_path}/airflow.db",
           "AIRFLOW_CONN_CBM_DB": db_url, "CBM_AOI_DIR": str(aois), "PYTHONPATH": str(ROOT)}
    airflow = str(Path(sys.executable).with_name("airflow"))
    subprocess.run([airflow, "db", "migrate"], env=env, check=True, capture_output=True)
    run = subprocess.run([airflow, "dags", "test", f"cbm_{cfg.name}_maintenance", "-c",
                          json.dumps({"cluster": False, "export_year": 2023})],
                         env=env, capture_output=True, text=True)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    files = sorted(p.name for p in (tmp_path / "export").iterdir())
    assert files == [f"{cfg.name}_2023_sigs.parquet", f"{cfg.name}_parcels.parquet"]
    assert pq.read_table(tmp_path / "export" / files[0]).num_rows > 0
