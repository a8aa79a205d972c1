"""Canonical observations: one per parcel and datatake, from overlapping granules.

SYNTHETIC scenes over SYNTHETIC parcels at the UTM zone 31/32 boundary (6 deg E, 50.5 deg N):
three Sentinel-2 granules of ONE datatake (tiles 31UGR and 31UGS in EPSG:32631, 32ULA in
EPSG:32632) and two consecutive CARD-BS slices of ONE Sentinel-1 datatake, each covering
the parcels partly (nodata elsewhere). They go through the real pipeline (import,
harvest, rasterize, extract); the expected canonical choice is derived independently
from the synthetic arrays and the parcel masks (rasterio, pixel centres).
"""

from __future__ import annotations

import datetime as dt
import json

import numpy as np
import psycopg
import pytest
import shapely
from affine import Affine
from rasterio.features import geometry_mask
from synthetic import (
    PARCELS,
    S2_GRANULES,
    T1,
    T,
    expected_canonical,
    expected_counts,
    s1_ref,
    s2_name,
)

from cbm_ops import analyst
from cbm_ops.config import AoiConfig
from cbm_ops.db import ensure_schema, transaction
from cbm_ops.db.partitions import ensure_partition


def test_overlapping_granules_of_one_datatake_give_one_canonical_observation(db_url, overlap_aoi):
    cfg, arrays, obsids = overlap_aoi
    by_id = {v: k for k, v in obsids.items()}
    exp = expected_counts(db_url, cfg, arrays)
    s2 = {pid: {r: v for r, v in c.items() if r.startswith("S2")} for pid, c in exp.items()}
    s1 = {pid: {r: v for r, v in c.items() if r.startswith("S1")} for pid, c in exp.items()}
    # the design: P1 in all three granules (tie 31UGR/31UGS), P2 fully only in 32ULA, P3 only in 32ULA
    names = {tile: s2_name(T, tile=tile) for tile in S2_GRANULES}
    assert set(s2[1]) == set(names.values()) and s2[1][names["31UGR"]] == s2[1][names["31UGS"]]
    assert expected_canonical(s2[1]) == names["31UGR"]
    assert expected_canonical(s2[2]) == names["32ULA"] and len(s2[2]) == 3
    assert set(s2[3]) == {names["32ULA"]}
    slices = [s1_ref(T1), s1_ref(T1 + dt.timedelta(seconds=25))]
    assert set(s1[1]) == set(slices) and expected_canonical(s1[1]) == slices[0]
    assert set(s1[2]) == {slices[1]}

    with psycopg.connect(db_url) as c:
        view = c.execute(f'SELECT pid, obsid, card, datatake, duplicates, cloudfree, scl_pixels '
                         f'FROM "{cfg.schema}".parcel_observations ORDER BY pid, card').fetchall()
        raw = c.execute(f'SELECT pid, obsid FROM "{cfg.schema}".parcel_observations_raw').fetchall()
    # raw: every product that covers a parcel is an observation, none lost
    assert sorted((p, by_id[o]) for p, o in raw) == sorted((p, r) for p, c in exp.items() for r in c)
    # canonical: one per parcel and datatake, the expected product
    got = {(pid, card.strip()): (by_id[obsid], dtk, dup, clear, scl)
           for pid, obsid, card, dtk, dup, clear, scl in view}
    assert len(got) == len(view)
    for pid in PARCELS:
        ref, dtk, dup, clear, scl = got[(pid, "s2")]
        assert ref == expected_canonical(s2[pid]) and dup == len(s2[pid])
        assert dtk == f"s2:2B:{T:%Y%m%dT%H%M%S}" and scl == s2[pid][ref]["scl"]
        epsg, t10, bands = arrays[ref]
        # cloud flag from the SCL array under the parcel (independent of the stored histogram)
        with psycopg.connect(db_url) as c:
            g = shapely.from_wkb(bytes(c.execute(f'SELECT ST_AsBinary(ST_Transform(wkb_geometry, {epsg})) '
                                                 f'FROM "{cfg.schema}".parcels WHERE ogc_fid = %s',
                                                 (pid,)).fetchone()[0]))
        scl = bands["SCL"]
        inside = ~geometry_mask([g], out_shape=scl.shape, transform=Affine(20, 0, t10.c, 0, -20, t10.f))
        classes = set(np.unique(scl[inside & (scl != 0)]).tolist())
        assert clear == (not classes & {3, 8, 9, 10, 11})
    assert got[(2, "s2")][3] is False and got[(1, "s2")][3] is True      # the design: clouds over P2's east
    assert set(s1[3]) == {slices[1]}
    for pid in PARCELS:
        ref, dtk, dup, clear, _ = got[(pid, "bs")]
        assert ref == expected_canonical(s1[pid]) and dup == len(s1[pid]) and clear is None
        assert dtk == "bs:1A:021474_024F9D"                               # both slices: one datatake


def test_time_series_has_one_row_per_band_and_datatake(db_url, overlap_aoi):
    cfg, arrays, obsids = overlap_aoi
    by_id = {v: k for k, v in obsids.items()}
    exp = expected_counts(db_url, cfg, arrays)
    with transaction(db_url) as conn:
        for pid in PARCELS:
            ts = analyst.parcel_time_series(conn, cfg, pid, "s2")
            assert sorted(ts["band"]) == ["B02", "B03", "B04", "B05", "B08", "B11"]   # no duplicate date
            assert len(set(ts["obsid"])) == 1 and len(set(ts["date_part"])) == 1
            cands = {r: v for r, v in exp[pid].items() if r.startswith("S2")}
            assert by_id[ts["obsid"][0]] == expected_canonical(cands)
            # the values are those of the canonical granule's pixels
            ref = by_id[ts["obsid"][0]]
            epsg, t10, bands = arrays[ref]
            g = shapely.from_wkb(bytes(conn.execute(
                f'SELECT ST_AsBinary(ST_Transform(wkb_geometry, {epsg})) FROM "{cfg.schema}".parcels '
                'WHERE ogc_fid = %s', (pid,)).fetchone()[0]))
            for band in ("B04", "B08"):
                arr = bands[band]
                inside = ~geometry_mask([g], out_shape=arr.shape, transform=t10)
                v = arr[inside & (arr != 0)].astype(float) - 1000          # BOA_ADD_OFFSET of baseline 05.10
                i = ts["band"].index(band)
                assert ts["count"][i] == v.size and ts["mean"][i] == pytest.approx(v.mean(), rel=1e-6)
            i4, i8 = ts["band"].index("B04"), ts["band"].index("B08")
            b4, b8 = ts["mean"][i4], ts["mean"][i8]
            assert ts["ndvi"][0] == pytest.approx((b8 - b4) / (b8 + b4), abs=1e-6)
            raw = analyst.parcel_time_series(conn, cfg, pid, "s2", raw=True)
            assert len(raw["band"]) == 6 * len(cands)
            assert {by_id[o] for o, c in zip(raw["obsid"], raw["canonical"], strict=True) if c} == {ref}
            assert set(raw["duplicates"]) == {len(cands)}
        bs = analyst.parcel_time_series(conn, cfg, 1, "bs")
        assert sorted(bs["band"]) == ["VHb", "VVb"] and by_id[bs["obsid"][0]] == s1_ref(T1)
        assert len(analyst.parcel_time_series(conn, cfg, 1, "bs", raw=True)["band"]) == 4
        scl = analyst.parcel_time_series(conn, cfg, 2, "scl", raw=True)
        assert len(scl["obsid"]) == 3 and sum(scl["canonical"]) == 1


def test_library_and_view_choose_the_same_observations(db_url, overlap_aoi):
    cfg, _arrays, _obsids = overlap_aoi
    with transaction(db_url) as conn:
        view = {(p, o) for p, o in conn.execute(f'SELECT pid, obsid FROM "{cfg.schema}".parcel_observations')}
        lib = {(pid, o["obsid"]) for pid in PARCELS for o in analyst.parcel_observations(conn, cfg, pid)}
        raw = {(pid, o["obsid"]) for pid in PARCELS for o in analyst.parcel_observations(conn, cfg, pid, raw=True)}
    assert lib == view and len(view) == 2 * len(PARCELS)      # one S2 and one S1 datatake per parcel
    assert view < raw and len(raw) == 3 + 3 + 1 + 2 + 1 + 1   # P1: 3 + 2, P2: 3 + 1, P3: 1 + 1


# ----------------------------------------------------------------- the rule, step by step
def test_rule_order_scl_pixels_band_count_baseline_reference(db_url, db_schema):
    """SYNTHETIC catalogue and result rows: each case isolates one step of the rule."""
    ensure_schema(db_url, db_schema)
    s = db_schema
    cases = {   # pid: [(reference, baseline, scl histogram or None, band counts)], expected winner first
        1: [("S2A_MSIL2A_20230601T105621_N0510_R051_T31UGR_20230601T120000", "05.10", {"4": 10}, [40]),
            ("S2A_MSIL2A_20230601T105621_N0510_R051_T31UGS_20230601T120000", "05.10", {"4": 9}, [90])],  # 1: SCL
        2: [("S2A_MSIL2A_20230601T105621_N0510_R051_T32ULA_20230601T120000", "05.10", {"4": 5, "9": 5}, [41]),
            ("S2A_MSIL2A_20230601T105621_N0510_R051_T31UGR_20230601T120000", "05.10", {"4": 10}, [40])],  # 2: count
        3: [("S2A_MSIL2A_20230601T105621_N0511_R051_T31UGS_20230601T120000", "05.11", {"4": 10}, [40]),
            ("S2A_MSIL2A_20230601T105621_N0510_R051_T31UGR_20230601T120000", "05.10", {"4": 10}, [40])],  # 3: base
        4: [("S2A_MSIL2A_20230601T105621_N0510_R051_T31UGR_20230601T120000", "05.10", {"4": 10}, [40]),
            ("S2A_MSIL2A_20230601T105621_N0510_R051_T31UGS_20230601T120000", "05.10", {"4": 10}, [40])],  # 4: name
        5: [("S2A_MSIL2A_20230601T105621_N0510_R051_T31UGS_20230601T120000", "05.10", None, [30]),       # no SCL:
            ("S2A_MSIL2A_20230601T105621_N0510_R051_T31UGR_20230601T120000", "05.10", None, [20])],      # counts
    }
    ids = {}
    with psycopg.connect(db_url) as c:
        for rows in cases.values():
            for ref, base, _h, _n in rows:
                if ref not in ids:
                    ids[ref] = c.execute(
                        f'INSERT INTO "{s}".dias_catalogue (obstime, reference, sensor, card, tile, epsg, '
                        "processing_baseline) VALUES (%s, %s, '2A', 's2', %s, 32631, %s) RETURNING id",
                        (T, ref, ref.split("_")[5][1:], base)).fetchone()[0]
    cfg = AoiConfig(name="r", schema=s, start_date=dt.date(2023, 1, 1))
    for obsid in ids.values():                 # result partitions, as extraction creates them
        ensure_partition(db_url, cfg, obsid)
    with psycopg.connect(db_url) as c:
        for pid, rows in cases.items():
            for ref, _b, hist, counts in rows:
                if hist is not None:
                    c.execute(f'INSERT INTO "{s}".hists VALUES (%s, %s, %s)', (pid, ids[ref], json.dumps(hist)))
                for band, n in zip(("B04",), counts, strict=False):
                    c.execute(f'INSERT INTO "{s}".sigs (pid, obsid, band, count, mean) VALUES (%s, %s, %s, %s, 1)',
                              (pid, ids[ref], band, n))
        view = dict(c.execute(f'SELECT pid, obsid FROM "{s}".parcel_observations'))
    cfg = AoiConfig(name="rule", schema=s, start_date=dt.date(2023, 1, 1))
    assert view == {pid: ids[rows[0][0]] for pid, rows in cases.items()}
    # the library needs parcels for the footprint box: a SYNTHETIC parcel table
    with psycopg.connect(db_url) as c:
        c.execute(f'CREATE TABLE "{s}".parcels (ogc_fid integer PRIMARY KEY, wkb_geometry geometry(Polygon, 4326))')
        for pid in cases:
            c.execute(f'INSERT INTO "{s}".parcels VALUES (%s, ST_MakeEnvelope(6, 50.5, 6.001, 50.501, 4326))', (pid,))
    with transaction(db_url) as conn:
        for pid, rows in cases.items():
            obs = analyst.parcel_observations(conn, cfg, pid, raw=True)
            assert [o["obsid"] for o in obs if o["canonical"]] == [ids[rows[0][0]]]
            assert {o["duplicates"] for o in obs} == {2}


def test_a_datatake_across_new_year_is_one_observation_of_one_year(db_url, db_schema):
    """Two SYNTHETIC CARD-BS slices of one datatake, 23:59:50 on Dec 31 and 00:00:15 on
    Jan 1: the API and the export put the acquisition in the year it started, once."""
    from cbm_ops.db import q

    ensure_schema(db_url, db_schema)
    s = db_schema
    slices = [(dt.datetime(2018, 12, 31, 23, 59, 50), "20181231T235950_20190101T000015", 40),
              (dt.datetime(2019, 1, 1, 0, 0, 15), "20190101T000015_20190101T000040", 30)]
    ids = []
    with psycopg.connect(db_url) as c:
        for t, span, _n in slices:
            ref = f"S1A_IW_GRDH_1SDV_{span}_025000_02C000_ABCD_CARD_BS"
            ids.append(c.execute(f'INSERT INTO "{s}".dias_catalogue (obstime, reference, sensor, card, epsg) '
                                 "VALUES (%s, %s, '1A', 'bs', 32631) RETURNING id", (t, ref)).fetchone()[0])
        c.execute(f'CREATE TABLE "{s}".parcels (ogc_fid integer PRIMARY KEY, wkb_geometry geometry(Polygon, 4326))')
        c.execute(f'INSERT INTO "{s}".parcels VALUES (1, ST_MakeEnvelope(6, 50.5, 6.001, 50.501, 4326))')
    cfg = AoiConfig(name="ny", schema=s, start_date=dt.date(2018, 1, 1), cards=("bs",))
    for obsid, (_t, _s, n) in zip(ids, slices, strict=True):
        ensure_partition(db_url, cfg, obsid)
        with psycopg.connect(db_url) as c:
            c.execute(f'INSERT INTO "{s}".sigs (pid, obsid, band, count, mean) VALUES (1, %s, %s, %s, 1)',
                      (obsid, "VVb", n))
    with transaction(db_url) as conn:
        by_year = {y: [(o["obsid"], o["canonical"]) for o in
                       analyst.parcel_observations(conn, cfg, 1, cards=("bs",), year=y, raw=True)]
                   for y in (2018, 2019)}
        exported = {y: conn.execute(q("export_datatakes", schema=s), {
            "start": dt.datetime(y, 1, 1), "end": dt.datetime(y + 1, 1, 1)}).fetchall() for y in (2018, 2019)}
    assert by_year == {2018: [(ids[0], True), (ids[1], False)], 2019: []}
    assert exported == {2018: [("bs:1A:025000_02C000", ids)], 2019: []}
