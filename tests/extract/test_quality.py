"""Quality gate: every check quarantines a bad product (real corrupted copies of the bundled
sample, or SYNTHETIC products with known defects), no rows are written, `release` accepts it;
truncated raw files get a named status; lineage is recorded with the rows."""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil

import numpy as np
import psycopg
import pytest
from conftest import ROOT
from synthetic import (
    X0,
    Y0,
    harvest_all,
    make_aoi,
    resto_feature,
    synthetic_s2_bands,
    write_card_bs,
    write_card_coh6,
    write_catalogue,
    write_s2_safe,
)

from cbm_ops import __version__, queue
from cbm_ops.cli import main as cli
from cbm_ops.config import AoiConfig
from cbm_ops.extract import run_queue
from cbm_ops.parcels import import_parcels

SAMPLE = ROOT / "include" / "sample"
BOX = (2.9, 50.4, 4.5, 51.4)
T = dt.datetime(2023, 6, 2, 17, 32, 45)


def stage_rows(url, schema):
    with psycopg.connect(url) as c:
        return {r[0]: r[1:] for r in c.execute(
            f'SELECT stage, status, last_error, quality, lineage FROM "{schema}".scene_stages ORDER BY stage')}


def sigs_count(url, schema):
    with psycopg.connect(url) as c:
        return c.execute(f'SELECT count(*) FROM "{schema}".sigs').fetchone()[0]


def s1_aoi(db_url, db_schema, tmp_path, cards=("bs",)):
    cfg, eodata = make_aoi(db_schema, tmp_path, cards=cards, quality={"min_expected_parcels": 3})
    import_parcels(db_url, cfg)
    return cfg, eodata


def test_coherence_above_one_is_quarantined_then_released(db_url, db_schema, tmp_path):
    cfg, eodata = s1_aoi(db_url, db_schema, tmp_path, cards=("c6",))
    rng = np.random.default_rng(3)
    c6 = write_card_coh6(eodata, T, X0, Y0, 20.0, rng.random((32, 32)) * 3.0, rng.random((32, 32)))  # VV up to 3
    write_catalogue(tmp_path / "catalogue" / "s1.json", [
        resto_feature(c6, T, "CARD-COH6", f"/eodata/Sentinel-1/SAR/CARD-COH6/2023/06/02/{c6}", BOX)])
    assert harvest_all(db_url, cfg).inserted == 1
    out = run_queue(db_url, cfg, "c6")
    assert out["by_status"] == {"Quarantined": 1}
    status, error, qual, lin = stage_rows(db_url, db_schema)["c6"]
    assert status == "Quarantined" and "VVc" in error and "physically impossible" in error
    assert qual["passed"] is False and qual["bands"][0]["out_of_range"] > 0 and lin is None
    assert sigs_count(db_url, db_schema) == 0                         # nothing published
    with psycopg.connect(db_url) as c:
        assert c.execute(f'SELECT status FROM "{db_schema}".dias_catalogue').fetchone()[0] == "Quarantined"
    assert queue.cleanup(db_url, cfg).requeued == {}                  # waits for an operator
    # the operator accepts it: extracted with the gate recorded, rows written
    obsid = out["results"][0]["obsid"]
    aoi_file = tmp_path / "aoi.yaml"
    aoi_file.write_text(json.dumps(cfg.model_dump(mode="json", by_alias=True)))
    assert cli(["release", "--aoi", str(aoi_file), "--db-url", db_url, "--obsid", str(obsid)]) == 0
    status, error, qual, lin = stage_rows(db_url, db_schema)["c6"]
    assert status == "extracted" and qual["released_by_operator"] is True and qual["passed"] is False
    assert sigs_count(db_url, db_schema) > 0
    assert lin["package_version"] == __version__ and lin["bands"] == ["VVc", "VHc"]
    # the release covered that extraction only: a later re-run meets the gate again
    assert queue.requeue(db_url, cfg, [obsid], ["c6"]) == 1
    assert run_queue(db_url, cfg, "c6")["by_status"] == {"Quarantined": 1}
    assert stage_rows(db_url, db_schema)["c6"][0] == "Quarantined"


def test_negative_backscatter_nan_and_constant_bands(db_url, db_schema, tmp_path):
    cfg, eodata = s1_aoi(db_url, db_schema, tmp_path)
    rng = np.random.default_rng(5)
    good = rng.gamma(2.0, 0.04, (70, 70)).astype(np.float32)
    cases = {
        "negative": (good - 0.5, "physically impossible"),
        "nan": (np.where(rng.random((70, 70)) < 0.3, np.nan, good).astype(np.float32), "NaN"),
        "constant": (np.full((70, 70), 0.05, np.float32), "constant"),
    }
    feats = []
    for k, (vv, _) in enumerate(cases.values()):
        t = T + dt.timedelta(days=k)
        ref = write_card_bs(eodata, t, X0, Y0, 10.0, {"VV": vv, "VH": good})
        feats.append(resto_feature(ref, t, "CARD-BS", f"/eodata/Sentinel-1/SAR/CARD-BS/{t:%Y/%m/%d}/{ref}", BOX))
    write_catalogue(tmp_path / "catalogue" / "s1.json", feats)
    assert harvest_all(db_url, cfg).inserted == 3
    out = run_queue(db_url, cfg, "bs")
    assert out["by_status"] == {"Quarantined": 3}
    for res, (_, why) in zip(out["results"], cases.values(), strict=True):
        assert why in res["error"] and "VVb" in res["error"]
    assert sigs_count(db_url, db_schema) == 0


def test_all_zero_s2_band_and_scl_garbage_are_quarantined(db_url, db_schema, tmp_path):
    cfg, eodata = make_aoi(db_schema, tmp_path, quality={"min_expected_parcels": 3})
    import_parcels(db_url, cfg)
    feats = []
    for day, defect in ((5, "zero_b04"), (6, "scl_garbage")):
        t = dt.datetime(2023, 6, day, 10, 56, 21)
        bands = synthetic_s2_bands(day)
        if defect == "zero_b04":
            bands["B04"][:] = 0                                 # DN 0 is nodata: no parcel has data
        else:
            bands["SCL"][:] = np.random.default_rng(day).integers(0, 256, bands["SCL"].shape).astype(np.uint8)
        name = write_s2_safe(eodata, t, X0, Y0, bands)
        feats.append(resto_feature(name + ".SAFE", t, "L2A", f"/eodata/Sentinel-2/MSI/L2A/2023/06/{day:02d}/"
                                   f"{name}.SAFE", BOX))
    write_catalogue(tmp_path / "catalogue" / "s2.json", feats)
    assert harvest_all(db_url, cfg).inserted == 2
    from cbm_ops.grid.stored import rasterize_aoi

    rasterize_aoi(db_url, cfg)
    scl = run_queue(db_url, cfg, "scl")
    assert scl["by_status"] == {"extracted": 1, "Quarantined": 1}
    bad = next(r for r in scl["results"] if r["status"] == "Quarantined")
    assert "SCL" in bad["error"] and "physically impossible" in bad["error"]
    ten = run_queue(db_url, cfg, "s2_10m")                     # the quarantined SCL scene is not claimed
    assert ten["by_status"] == {"Quarantined": 1}
    assert "B04" in ten["results"][0]["error"] and "valid pixels" in ten["results"][0]["error"]
    with psycopg.connect(db_url) as c:
        assert c.execute(f'SELECT count(*) FROM "{db_schema}".sigs').fetchone()[0] == 0
        assert c.execute(f'SELECT count(DISTINCT obsid) FROM "{db_schema}".hists').fetchone()[0] == 1


def copy_sample_bs(tmp_path, which: int = 40):
    """A REAL CARD-BS product of the sample (and its catalogue record) in a fresh store."""
    feats = json.loads((SAMPLE / "catalogue" / "s1_card_bs.json").read_text())["features"]
    feat = feats[which]
    rel = feat["properties"]["productIdentifier"][len("/eodata/"):]
    dst = tmp_path / "eodata" / rel
    shutil.copytree(SAMPLE / "eodata" / rel, dst)
    write_catalogue(tmp_path / "catalogue" / "s1.json", [feat])
    return feat, dst


def sample_cfg(db_schema, tmp_path, **kw) -> AoiConfig:
    return AoiConfig(name="qs", schema=db_schema, start_date=dt.date(2017, 8, 1), cards=("bs",),
                     parcels={"source": str(SAMPLE / "parcels" / "flanders_00002806639B424A.gpkg"),
                              "layer": "parcels"},
                     catalogue={"source": "offline", "path": str(tmp_path / "catalogue")},
                     store={"root": str(tmp_path / "eodata")}, **kw)


def run_sample(db_url, cfg):
    import_parcels(db_url, cfg)
    from cbm_ops.harvest import harvest

    assert harvest(db_url, cfg, dt.datetime(2017, 8, 1), dt.datetime(2018, 12, 1)).inserted == 1
    return run_queue(db_url, cfg, "bs")


def test_real_sample_product_passes_the_gate(db_url, db_schema, tmp_path):
    copy_sample_bs(tmp_path)
    out = run_sample(db_url, sample_cfg(db_schema, tmp_path))
    assert out["by_status"] == {"extracted": 1}
    _, _, qual, lin = stage_rows(db_url, db_schema)["bs"]
    assert qual["passed"] and all(b["coverage"] == 1.0 for b in qual["bands"]) and qual["bands"][0]["expected"] >= 5
    assert lin["index_version"].endswith(":scene")            # off the stored lattices: indexed for the scene
    assert lin["product"].startswith("Sentinel-1/SAR/CARD-BS/") and lin["catalogue_source"].startswith("offline")


def test_truncated_real_envi_file_gets_a_named_status(db_url, db_schema, tmp_path):
    _, dst = copy_sample_bs(tmp_path)
    img = next(dst.rglob("Gamma0_VH.img"))
    with open(img, "r+b") as f:
        f.truncate(os.path.getsize(img) // 2)                  # GDAL would zero-fill the rest
    out = run_sample(db_url, sample_cfg(db_schema, tmp_path))
    assert out["by_status"] == {"Truncated file": 1}
    assert "header implies" in out["results"][0]["error"]
    assert sigs_count(db_url, db_schema) == 0


@pytest.mark.parametrize("damage", ["random", "zeros"])
def test_overwritten_real_envi_file_is_quarantined(db_url, db_schema, tmp_path, damage):
    _, dst = copy_sample_bs(tmp_path)
    img = next(dst.rglob("Gamma0_VH.img"))
    n = os.path.getsize(img)
    img.write_bytes(np.random.default_rng(9).bytes(n) if damage == "random" else bytes(n))
    out = run_sample(db_url, sample_cfg(db_schema, tmp_path, quality={"min_expected_parcels": 5}))
    assert out["by_status"] == {"Quarantined": 1}
    why = out["results"][0]["error"]
    assert "VHb" in why and ("physically impossible" in why if damage == "random" else "valid pixels" in why)
    assert sigs_count(db_url, db_schema) == 0


def test_a_repeating_s1_lattice_becomes_a_stored_index(db_url, db_schema, tmp_path):
    """Two REAL CARD-BS products on one lattice: the first is indexed for its own parcels
    (footprint query), the second makes the lattice a stored index, with the same pixels."""
    feats = json.loads((SAMPLE / "catalogue" / "s1_card_bs.json").read_text())["features"][40:42]
    for feat in feats:
        rel = feat["properties"]["productIdentifier"][len("/eodata/"):]
        shutil.copytree(SAMPLE / "eodata" / rel, tmp_path / "eodata" / rel)
    write_catalogue(tmp_path / "catalogue" / "s1.json", feats)
    cfg = sample_cfg(db_schema, tmp_path)
    import_parcels(db_url, cfg)
    from cbm_ops.harvest import harvest

    assert harvest(db_url, cfg, dt.datetime(2017, 8, 1), dt.datetime(2018, 12, 1)).inserted == 2
    out = run_queue(db_url, cfg, "bs")
    assert out["by_status"] == {"extracted": 2}
    with psycopg.connect(db_url) as c:
        sources = [r[0]["index_version"].split(":", 2)[2] for r in c.execute(
            f'SELECT lineage FROM "{db_schema}".scene_stages ORDER BY obsid')]
        grids = c.execute(f'SELECT count(*) FROM "{db_schema}".parcel_grids').fetchone()[0]
        per_scene = [r[0] for r in c.execute(f'SELECT count(*) FROM "{db_schema}".sigs GROUP BY obsid ORDER BY obsid')]
    assert sources[0] == "scene" and sources[1].startswith("stored:") and grids == 1
    assert per_scene[0] == per_scene[1] > 0            # the same parcels have data on both grids
