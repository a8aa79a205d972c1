"""The run-window rule (cbm_ops.runs) without Airflow: what each kind of run harvests and extracts."""

from __future__ import annotations

import datetime as dt

import pytest
from conftest import ROOT

from cbm_ops.config import load_aoi
from cbm_ops.errors import RunWindowError
from cbm_ops.runs import campaign_clip, make_batches, run_windows

DEMO = ROOT / "include" / "aois" / "demo_flanders.yaml"
UTC = dt.UTC


def test_batches_are_capped_and_labelled():
    pending = [(i, f"S2A_MSIL2A_2018{i:04d}") for i in range(1, 5001)]
    assert len(make_batches(pending[:1000], batch_size=10, max_batches=200)) == 100
    b = make_batches(pending, batch_size=10, max_batches=200)     # capped: batches grow
    assert len(b) == 200 and sum(len(x["obsids"]) for x in b) == 5000
    assert b[0]["label"] == "S2A_MSIL2A_20180001 (+24)"
    assert make_batches(pending[:3], 10, 200) == [{"obsids": [1, 2, 3], "label": "S2A_MSIL2A_20180001 (+2)"}]
    assert make_batches([], 10, 200) == []


def windows(cfg, params, run_type, start=None, end=None, after=None):
    return run_windows(cfg, params, run_type=run_type, data_interval=(start, end), run_after=after)


def test_run_windows():
    cfg = load_aoi(DEMO)          # lookback 10 days; campaign 2017-08-01 .. 2018-12-01
    d0, d1 = dt.datetime(2018, 5, 1, 3, tzinfo=UTC), dt.datetime(2018, 5, 2, 3, tzinfo=UTC)
    w = windows(cfg, {}, "scheduled", d0, d1)
    assert w.harvest == (dt.datetime(2018, 4, 21, 3), dt.datetime(2018, 5, 2, 3)) and w.extract == (None, None)
    assert w.mode == "continuous" and w.interval == (dt.datetime(2018, 5, 1, 3), dt.datetime(2018, 5, 2, 3))
    w = windows(cfg, {}, "backfill", d0, d1)
    assert w.harvest == w.extract == (dt.datetime(2018, 5, 1, 3), dt.datetime(2018, 5, 2, 3))
    w = windows(cfg, {"start": "2018-06-01", "end": "2018-07-01"}, "manual", after=d1)
    assert w.extract == (dt.datetime(2018, 6, 1), dt.datetime(2018, 7, 1)) and w.mode == "manual window"
    w = windows(cfg, {}, "manual", after=d1)
    assert w.harvest == (dt.datetime(2018, 4, 22, 3), dt.datetime(2018, 5, 2, 3)) and w.mode == "manual"
    # a scheduled run after the campaign (e.g. the one that unpausing creates) does nothing
    late = dt.datetime(2026, 11, 21, tzinfo=UTC)
    w = windows(cfg, {}, "scheduled", late, late, late)
    assert w.harvest == (None, None) and w.extract is None and "campaign over" in w.mode
    # clipped to the campaign
    w = windows(cfg, {"start": "2017-01-01", "end": "2019-01-01"}, "manual", after=late)
    assert w.harvest == (dt.datetime(2017, 8, 1), dt.datetime(2018, 12, 1))
    # the JSON form the DAG's setup task returns (XCom)
    assert windows(cfg, {}, "scheduled", d0, d1).as_dict() == {
        "mode": "continuous", "harvest": ["2018-04-21 03:00:00", "2018-05-02 03:00:00"], "extract": [None, None],
        "interval": ["2018-05-01 03:00:00", "2018-05-02 03:00:00"]}


@pytest.mark.parametrize("bad", [{"start": "2018-06-01", "end": "2018-06-01"}, {"end": "2018-06-01"},
                                 {"start": "01/05/2018"}])
def test_bad_date_params_are_refused(bad):
    with pytest.raises(RunWindowError):
        windows(load_aoi(DEMO), bad, "manual", after=dt.datetime(2018, 5, 2, 3, tzinfo=UTC))


def test_campaign_clip_is_the_cli_rule_too():
    cfg = load_aoi(DEMO)
    assert campaign_clip(cfg, dt.datetime(2010, 1, 1), dt.datetime(2030, 1, 1)) == (
        dt.datetime(2017, 8, 1), dt.datetime(2018, 12, 1))
    assert campaign_clip(cfg, dt.datetime(2019, 1, 1), dt.datetime(2020, 1, 1)) == (None, None)
