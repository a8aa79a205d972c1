"""Completeness (expected vs harvested vs extracted) and window widening after an outage.

Catalogues: the real earth-search STAC collection of tile 35MNM (13 S2 L2A products,
June-July 2020, S2A/S2B 5 days apart), and a local resto server over a SYNTHETIC catalogue
with the real revisit pattern (tests/harvest/resto_server.py) from which passes are removed (holes)
or published late (late arrivals). Expected gaps are derived from the records removed, not
from the code under test.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil

import psycopg
import pytest
import yaml
from conftest import FIXTURES
from resto_server import RestoServer, s1_revisit_records, s2_revisit_records
from synthetic import set_aoi

from cbm_ops import errors, naming
from cbm_ops.cli import main
from cbm_ops.config import AoiConfig
from cbm_ops.harvest import catalogue, completeness, records

CAT = FIXTURES / "catalogue"
FLANDERS = "POLYGON((3.0 50.7, 4.2 50.7, 4.2 51.2, 3.0 51.2, 3.0 50.7))"
WORLD = "POLYGON((-10 -10, 40 -10, 40 50, -10 50, -10 -10))"


def cfg_for(schema, url=None, path=None, **kw) -> AoiConfig:
    cat = ({"source": "resto", "url": url + "/resto/api/collections/{collection}/search.json", "retries": 0}
           if url else {"source": "offline", "path": str(path)})
    return AoiConfig.model_validate({"name": "t", "schema": schema, "start_date": kw.pop("start_date", "2024-01-01"),
                                     "catalogue": cat, **kw})


def gap_key(title: str) -> tuple:
    """(card, sensor, tile, orbit, date) of a removed record, from its name alone."""
    p = naming.parse(title)
    card = "s2" if p.card == "s2" else "bs"
    return (card, p.sensor, p.tile, p.relative_orbit, p.sensing_start.date())


def gap_keys(rep) -> set:
    return {(g.card, g.sensor, g.tile, g.relative_orbit, g.expected.date()) for g in rep.gaps
            if g.status == "missing"}


# ----------------------------------------------------------------------------- real STAC data
def test_real_tile_holes_then_late_arrivals(db_url, db_schema, tmp_path):
    doc = json.loads((CAT / "site2-2020_jun_jul-35MNM.geojson").read_text())
    items = doc["features"]
    held = [items[3], items[8]]                            # not published at the first harvest
    for i, f in enumerate(items):
        (tmp_path / f"item{i:02d}.json").write_text(json.dumps(f)) if f not in held else None
    cfg = cfg_for(db_schema, path=tmp_path, cards=["s2"], start_date="2020-01-01")
    set_aoi(db_url, cfg, WORLD)
    start, end, now = dt.datetime(2020, 6, 1), dt.datetime(2020, 7, 31, 23, 59), dt.datetime(2020, 9, 1)
    catalogue.harvest(db_url, cfg, start, end)
    rep = completeness.completeness(db_url, cfg, start, end, now=now)
    print("\n" + rep.table())
    c = rep.cards["s2"]
    # 61 days, one pass every 5 days alternating S2A/S2B on R078: 13 expected
    assert (c.expected, c.harvested, c.missing, c.pending, c.extra) == (13, 11, 2, 0, 0)
    assert gap_keys(rep) == {gap_key(f["properties"]["s2:product_uri"]) for f in held}
    for g in rep.gaps:    # the expected time is the missing product's, to the minute
        t = next(records._parse_time(f["properties"]["datetime"]) for f in held
                 if gap_key(f["properties"]["s2:product_uri"])[1] == g.sensor
                 and records._parse_time(f["properties"]["datetime"]).date() == g.expected.date())
        assert abs(g.expected - t) < dt.timedelta(minutes=1)
    # the late products are published: a later harvest closes the gaps
    for i, f in enumerate(items):
        if f in held:
            (tmp_path / f"item{i:02d}.json").write_text(json.dumps(f))
    catalogue.harvest(db_url, cfg, start, end)
    rep = completeness.completeness(db_url, cfg, start, end, now=now)
    assert (rep.cards["s2"].expected, rep.cards["s2"].harvested, rep.gaps) == (13, 13, [])


# ----------------------------------------------------------------------------- resto with holes
T0, T1 = dt.datetime(2024, 1, 1), dt.datetime(2024, 3, 31, 23, 59)


def synthetic_catalogue():
    full = s2_revisit_records(T0, T1) + s1_revisit_records(T0, T1, "CARD-BS")

    def pick(prefix, date, tile=None):
        return [r for r in full if r["title"].startswith(prefix) and r["startDate"].startswith(date)
                and (tile is None or f"_T{tile}_" in r["title"])]

    holes = (pick("S2A_", "2024-02-11", "31UDS")                  # one tile of a pass
             + pick("S2B_", "2024-03-07")                          # a whole S2B pass (2 tiles)
             + pick("S1B_", "2024-02-12"))                         # both slices of an S1B pass
    late = pick("S2B_", "2024-03-09", "31UES") + pick("S1A_", "2024-03-13")
    assert len(holes) == 5 and len(late) == 3
    return full, holes, late


def test_resto_catalogue_with_holes_and_late_arrivals(db_url, db_schema):
    full, holes, late = synthetic_catalogue()
    gone = {r["id"] for r in holes + late}
    with RestoServer([r for r in full if r["id"] not in gone], page_max=20, cap=1000) as srv:
        cfg = cfg_for(db_schema, url=srv.url, cards=["s2", "bs"])
        set_aoi(db_url, cfg, FLANDERS)
        catalogue.harvest(db_url, cfg, T0, T1)
        start, now = dt.datetime(2024, 2, 1), dt.datetime(2024, 4, 10)
        rep1 = completeness.completeness(db_url, cfg, start, T1, now=now)
        print("\n--- first harvest\n" + rep1.table())
        assert gap_keys(rep1) == {gap_key(r["title"]) for r in holes + late}
        # the late arrivals are published; the next harvest picks them up
        srv.records.extend(late)
        catalogue.harvest(db_url, cfg, T0, T1)
        # scenes of February are extracted
        with psycopg.connect(db_url) as c:
            c.execute(f"""UPDATE "{db_schema}".dias_catalogue SET status = 'extracted'
                          WHERE obstime < '2024-03-01'""")
        rep = completeness.completeness(db_url, cfg, start, T1, now=now)
        print("\n--- after the late arrivals\n" + rep.table())
    assert gap_keys(rep) == {gap_key(r["title"]) for r in holes}
    # expected acquisitions, independently: S2 passes per (sat, orbit, tile) and S1 passes
    present = {r["id"] for r in full} - {r["id"] for r in holes}
    in_window = [r for r in full if start <= records._parse_time(r["startDate"])]
    s2_expected = {gap_key(r["title"]) for r in in_window if r["collection"] == "Sentinel2"}
    s1_expected = {gap_key(r["title"]) for r in in_window if r["collection"] == "Sentinel1"}
    s2_feb = {gap_key(r["title"]) for r in in_window if r["collection"] == "Sentinel2"
              and r["id"] in present and r["startDate"] < "2024-03"}
    s1_feb = {gap_key(r["title"]) for r in in_window if r["collection"] == "Sentinel1"
              and r["id"] in present and r["startDate"] < "2024-03"}
    s2, bs = rep.cards["s2"], rep.cards["bs"]
    assert (s2.expected, s2.missing, s2.extracted, s2.extra) == (len(s2_expected), 3, len(s2_feb), 0)
    assert (bs.expected, bs.missing, bs.extracted, bs.extra) == (len(s1_expected), 1, len(s1_feb), 0)
    assert bs.products == 2 * (len(s1_expected) - 1)         # two slices per pass
    # threshold: 3 of the S2 acquisitions missing
    assert not rep.failed
    strict = completeness.completeness(db_url, cfg, start, T1, now=now, fail_above_pct=5.0)
    assert strict.failed and "s2" in strict.failure_message()
    with pytest.raises(completeness.IncompleteError, match="above 5 %"):
        completeness.check(db_url, cfg, start, T1, now=now, fail_above_pct=5.0)
    # young expected acquisitions are pending, not missing
    young = completeness.completeness(db_url, cfg, start, dt.datetime(2024, 3, 8, 12), now=dt.datetime(2024, 3, 8, 12))
    assert [(g.sensor, g.expected.date(), g.status) for g in young.gaps if g.expected.month == 3] == [
        ("2B", dt.date(2024, 3, 7), "pending"), ("2B", dt.date(2024, 3, 7), "pending")]
    json.dumps(rep.as_dict())


def test_retired_satellite_is_not_a_gap_but_an_outage_is(db_url, db_schema):
    recs = [r for r in s2_revisit_records(T0, T1) + s1_revisit_records(T0, T1)
            if not (r["title"].startswith("S1B_") and r["startDate"] >= "2024-02-01")       # S1B stops
            and not (r["title"].startswith("S2") and r["startDate"] >= "2024-03-15")]       # all S2 stop
    with RestoServer(recs, page_max=50, cap=1000) as srv:
        cfg = cfg_for(db_schema, url=srv.url, cards=["s2", "bs"])
        set_aoi(db_url, cfg, FLANDERS)
        catalogue.harvest(db_url, cfg, T0, T1)
        rep = completeness.completeness(db_url, cfg, T0, T1, now=dt.datetime(2024, 5, 1))
    print("\n" + rep.table())
    assert rep.cards["bs"].missing == 0 and "bs S1B" in rep.retired
    # every S2 pass after the stop is missing: 6 tracks, passes every 10 days until Mar 31
    want = {gap_key(r["title"]) for r in s2_revisit_records(dt.datetime(2024, 3, 15), T1)}
    assert gap_keys(rep) == want and len(want) == rep.cards["s2"].missing


# ----------------------------------------------------------------------------- outage -> widened window
def test_outage_widens_the_scheduled_window(db_url, db_schema):
    full = s2_revisit_records(T0, T1) + s1_revisit_records(T0, T1)
    with RestoServer(full, page_max=50, cap=1000) as srv:
        cfg = cfg_for(db_schema, url=srv.url, cards=["s2", "bs"], lookback_days=10)
        set_aoi(db_url, cfg, FLANDERS)
        # no harvest yet: a scheduled run starts at the campaign's start
        s, e, why = catalogue.widened_window(db_url, cfg, "s2", dt.datetime(2024, 1, 10), dt.datetime(2024, 1, 20))
        assert (s, e) == (T0, dt.datetime(2024, 1, 20)) and "campaign" in why
        # daily scheduled runs until Jan 20 succeed
        catalogue.harvest(db_url, cfg, T0, dt.datetime(2024, 1, 20))
        # outage: the runs of Jan 21 .. Feb 19 fail (catalogue unreachable) or do not run
        broken = cfg.model_copy(update={"catalogue": cfg.catalogue.model_copy(
            update={"url": "http://127.0.0.1:9/resto/api/collections/{collection}/search.json", "timeout_s": 2})})
        with pytest.raises(errors.HarvestError):
            catalogue.harvest(db_url, broken, dt.datetime(2024, 1, 11), dt.datetime(2024, 1, 21), cards=["s2"])
        # the run of Feb 20 would harvest [Feb 10, Feb 20]: it is widened back over the outage
        run = (dt.datetime(2024, 2, 10), dt.datetime(2024, 2, 20))
        s, e, why = catalogue.widened_window(db_url, cfg, "s2", *run)
        assert (s, e) == (dt.datetime(2024, 1, 10), run[1])          # last ok end Jan 20 - lookback 10 d
        assert "2024-01-20" in why and "widened" in why
        rep = catalogue.harvest(db_url, cfg, s, e, cards=["s2"], widened_from=run[0], note=why)
        assert rep.inserted > 0
        got = completeness.completeness(db_url, cfg, T0, run[1], cards=["s2"], now=dt.datetime(2024, 3, 1))
        assert got.gaps == [] and got.cards["s2"].expected == len(s2_revisit_records(T0, run[1]))
        # without widening the outage would have left gaps between Jan 20 and Feb 10
        # bs was not harvested since Jan 20: widened too; s2 now covered: the next run is not
        nxt = (dt.datetime(2024, 2, 11), dt.datetime(2024, 2, 21))
        assert catalogue.widened_window(db_url, cfg, "s2", *nxt) == (*nxt, None)
        assert catalogue.widened_window(db_url, cfg, "bs", *nxt)[0] == dt.datetime(2024, 1, 10)
        # bounded by harvest.max_widen_days, and off with harvest.widen
        capped = cfg.model_copy(update={"harvest": cfg.harvest.model_copy(update={"max_widen_days": 20})})
        s, _, why = catalogue.widened_window(db_url, capped, "bs", *nxt)
        assert s == nxt[1] - dt.timedelta(days=20) and "harvest.max_widen_days 20" in why and "campaign" not in why
        off = cfg.model_copy(update={"harvest": cfg.harvest.model_copy(update={"widen": False})})
        assert catalogue.widened_window(db_url, off, "bs", *nxt) == (*nxt, None)
    with psycopg.connect(db_url) as c:
        rows = c.execute(f'SELECT card, status, widened_from, note IS NOT NULL FROM "{db_schema}".harvest_log '
                         "ORDER BY id").fetchall()
    assert rows == [("s2", "ok", None, False), ("bs", "ok", None, False), ("s2", "failed", None, False),
                    ("s2", "ok", run[0], True)]


# ----------------------------------------------------------------------------- CLI
def test_cli_completeness(db_url, db_schema, tmp_path, capsys):
    full, holes, late = synthetic_catalogue()
    gone = {r["id"] for r in holes}
    with RestoServer([r for r in full if r["id"] not in gone], page_max=50, cap=1000) as srv:
        cfg = cfg_for(db_schema, url=srv.url, cards=["s2", "bs"])
        set_aoi(db_url, cfg, FLANDERS)
        path = tmp_path / "t.yaml"
        path.write_text(yaml.safe_dump(json.loads(cfg.model_dump_json(by_alias=True, exclude_defaults=True))))
        assert main(["harvest", "--aoi", str(path), "--db-url", db_url, "--start", "2024-01-01",
                     "--end", "2024-03-31T23:59"]) == 0
    capsys.readouterr()
    args = ["completeness", "--aoi", str(path), "--db-url", db_url, "--start", "2024-02-01",
            "--end", "2024-03-31T23:59"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "s2 S2A 31UDS R051" in out and "2024-02-11" in out and "bs S1B orbit 88" in out
    with pytest.raises(SystemExit) as e:
        main([*args, "--fail-above", "5"])
    assert e.value.code == 3
    capsys.readouterr()
    assert main([*args, "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["cards"]["s2"]["missing"] == 3 and d["gaps_total"] == 4
    assert main(["harvest-log", "--aoi", str(path), "--db-url", db_url]) == 0


def test_completeness_of_the_bundled_real_sample(db_url, db_schema, tmp_path):
    """The demo sample (real sensing times over one Flemish patch) against the model."""
    from conftest import ROOT

    shutil.copytree(ROOT / "include" / "sample" / "catalogue", tmp_path / "cat")
    cfg = cfg_for(db_schema, path=tmp_path / "cat", cards=["s2", "bs"], start_date="2017-08-01")
    set_aoi(db_url, cfg, "POLYGON((3.0 50.79, 3.01 50.79, 3.01 50.8, 3.0 50.8, 3.0 50.79))")
    catalogue.harvest(db_url, cfg, dt.datetime(2017, 8, 1), dt.datetime(2018, 12, 1))
    rep = completeness.completeness(db_url, cfg, dt.datetime(2017, 8, 1), dt.datetime(2018, 12, 1),
                                    now=dt.datetime(2019, 1, 1))
    print("\n" + rep.table())
    # the sample's product counts (include/sample/README.md)
    assert rep.cards["s2"].products == 118 and rep.cards["bs"].products == 159
    for c in rep.cards.values():
        # every real sensing time lies on its track's 10-day (S2) / 12-day (S1) grid ...
        assert c.extra == 0 and c.harvested == c.products
        assert c.harvested + c.missing + c.pending == c.expected
    # ... and every gap is a whole number of repeat cycles from a harvested pass of its track
    with psycopg.connect(db_url) as conn:
        seen = conn.execute(f'SELECT card, sensor, relative_orbit, obstime FROM "{db_schema}".dias_catalogue'
                            ).fetchall()
    for g in rep.gaps:
        period = 10 if g.card == "s2" else 12
        times = [t for card, sensor, orbit, t in seen if (card, sensor, orbit) == (g.card, g.sensor, g.relative_orbit)]
        cycles = [(g.expected - t) / dt.timedelta(days=period) for t in times]
        assert min(abs(x - round(x)) for x in cycles) * period * 24 < 1.0      # within an hour
