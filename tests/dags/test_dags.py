"""Airflow DAGs: import, structure, and a real end-to-end run with dag.test() on the sample."""

from __future__ import annotations

import copy
import datetime as dt
import os
import shutil
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest
import shapely
import yaml
from conftest import ROOT

pytestmark = pytest.mark.airflow
DEMO = ROOT / "include" / "aois" / "demo_flanders.yaml"
SAMPLE = ROOT / "include" / "sample"


@pytest.fixture(scope="module")
def airflow_env(tmp_path_factory, db_url):
    """AIRFLOW_HOME with a migrated SQLite metadata DB; set before Airflow is imported."""
    home = tmp_path_factory.mktemp("airflow-home")
    env = {
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins"),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home}/airflow.db",
        "AIRFLOW_CONN_CBM_TEST_DB": db_url,
        "AIRFLOW_CONN_CBM_DB": db_url,
        "CBM_AOI_DIR": str(ROOT / "include" / "aois"),
    }
    if "airflow" in sys.modules and os.environ.get("AIRFLOW_HOME") != str(home):
        pytest.fail("Airflow was imported before its test environment was set")
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    sys.path[:0] = [str(ROOT / "dags"), str(ROOT / "plugins")]
    airflow_bin = str(Path(sys.executable).with_name("airflow"))
    subprocess.run([airflow_bin, "db", "migrate"], env={**os.environ, "PYTHONPATH": str(ROOT)},
                   check=True, capture_output=True)
    yield env
    for k, v in old.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


def test_dagbag_imports_every_dag(airflow_env):
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(ROOT / "dags"))
    assert bag.import_errors == {}
    names = [yaml.safe_load(p.read_text())["name"] for p in (ROOT / "include" / "aois").glob("*.yaml")]
    assert set(bag.dag_ids) == {f"cbm_{n}" for n in names} | {f"cbm_{n}_maintenance" for n in names}
    d = bag.get_dag("cbm_demo_flanders")
    assert type(d.timetable).__name__ == "CronDataIntervalTimetable"
    assert {"start", "end", "cards", "stages", "harvest"} <= set(d.params.keys())
    ids = set(d.task_ids)
    assert {"setup", "catalogue.harvest_s2", "rasterize.rasterize_grid", "scl.extract", "s2_10m.extract",
            "s2_20m.extract", "bs.extract", "c6.extract", "cleanup", "summary"} <= ids
    t = d.get_task("s2_10m.extract")
    assert t.pool == "cbm_extract" and "scl.extract" in {u.task_id for u in d.get_task("s2_10m.plan").upstream_list}
    assert {u.task_id for u in d.get_task("bs.plan").upstream_list} == {"rasterize.rasterize_grid"}
    assert d.get_task("cleanup").trigger_rule == "all_done"
    # failures do not switch off other stages, but fail the run through the verdict leaf,
    # which runs after everything (every task is upstream of cleanup, all_done joints) and
    # reads the run's task states: one edge into it instead of one from every task
    assert d.get_task("rasterize.plan_grids").trigger_rule == "all_done"
    assert d.get_task("s2_20m.plan").trigger_rule == "all_done"
    v = d.get_task("verdict")
    assert v.trigger_rule == "all_done" and not v.downstream_list and v.retries == 0
    assert {u.task_id for u in v.upstream_list} == {"summary"}
    assert d.get_task("summary").trigger_rule == "all_done"
    cleanup_ancestors = {t.task_id for t in d.get_task("cleanup").get_flat_relatives(upstream=True)}
    assert cleanup_ancestors == set(d.task_ids) - {"cleanup", "summary", "verdict"}
    assert sum(len(t.downstream_list) for t in d.tasks) < 30
    # extraction retries soon after a dead worker (per-AOI extract_retry_delay_minutes)
    assert t.retry_delay == dt.timedelta(minutes=0.5) and d.get_task("setup").retry_delay == dt.timedelta(minutes=2)
    # map indexes are labelled from the task's arguments, i.e. before the task runs
    assert "op_kwargs['batch']['label']" in t.map_index_template


def test_params_validate_dates_and_offer_choices(airflow_env):
    from airflow.dag_processing.dagbag import DagBag

    d = DagBag(dag_folder=str(ROOT / "dags")).get_dag("cbm_demo_flanders")
    schema = {k: d.params.get_param(k).schema for k in d.params}
    descriptions = {k: d.params.get_param(k).description for k in d.params}
    assert all(s.get("title") for s in schema.values()), schema
    assert schema["start"]["format"] == schema["end"]["format"] == "date"
    assert "exclusive" in schema["end"]["title"]
    for key, choices in (("cards", ["s2", "bs", "c6"]), ("stages", ["scl", "s2_10m", "s2_20m", "bs", "c6"])):
        assert schema[key]["type"] == "array" and schema[key]["examples"] == choices   # the form's multi-select
        assert schema[key]["items"]["enum"] == choices
        assert all(c in descriptions[key] for c in choices)

    def validate(**conf):
        params = copy.deepcopy(d.params)
        for k, v in conf.items():
            params[k] = v
        return params.validate()

    assert validate(start="2018-05-01", end="2018-06-01")["end"] == "2018-06-01"
    assert validate()["start"] is None
    from airflow.sdk.exceptions import ParamValidationError

    for bad in ({"start": "01/05/2018"}, {"end": "2018-13-01"}, {"cards": ["s3"]}, {"stages": ["b04"]}):
        with pytest.raises(ParamValidationError):
            validate(**bad)


def test_a_bad_date_param_fails_the_task_for_good(airflow_env):
    """The run-window rule is cbm_ops.runs (tests/test_runs.py); the DAG turns its refusal of a
    bad Param into AirflowFailException (no retries)."""
    import cbm_tasks
    from airflow.sdk.exceptions import AirflowFailException

    from cbm_ops.config import load_aoi

    cfg = load_aoi(DEMO)
    run = type("Run", (), {"run_type": "manual", "data_interval_start": None, "data_interval_end": None,
                           "run_after": dt.datetime(2018, 5, 2, 3, tzinfo=dt.UTC)})()
    for bad in ({"start": "2018-06-01", "end": "2018-06-01"}, {"end": "2018-06-01"}, {"start": "01/05/2018"}):
        with pytest.raises(AirflowFailException):
            cbm_tasks.windows(cfg, {"params": bad, "dag_run": run})
    assert cbm_tasks.windows(cfg, {"params": {"start": "2018-04-01"}, "dag_run": run}).mode == "manual window"


@pytest.fixture
def test_aoi(tmp_path, db_schema, airflow_env):
    """The demo AOI under another name and schema, in a separate AOI directory."""
    cfg = yaml.safe_load(DEMO.read_text())
    cfg.update(name="test_flanders", schema=db_schema, db_conn_id="cbm_test_db", batch_size=4)
    cfg["maintenance"]["backup_dir"] = str(tmp_path / "backups")
    d = tmp_path / "aois"
    d.mkdir()
    (d / "test_flanders.yaml").write_text(yaml.safe_dump(cfg))
    os.environ["CBM_AOI_DIR"] = str(d)
    yield cfg
    os.environ["CBM_AOI_DIR"] = airflow_env["CBM_AOI_DIR"]


def run_dag(dag_id: str, conf: dict):
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(ROOT / "dags"))
    assert bag.import_errors == {}
    return bag.get_dag(dag_id).test(run_conf=conf)


def test_dag_runs_end_to_end_on_the_real_sample(test_aoi, db_url, db_schema):
    from cbm_ops.extract import zonal_stats

    conf = {"start": "2018-05-01", "end": "2018-07-01"}
    run = run_dag("cbm_test_flanders", conf)
    assert str(run.state) == "success"
    s = db_schema
    with psycopg.connect(db_url) as c:
        scenes = dict(c.execute(f'SELECT card, count(*) FROM "{s}".dias_catalogue GROUP BY 1'))
        status = dict(c.execute(f'SELECT status, count(*) FROM "{s}".dias_catalogue GROUP BY 1'))
        bands = dict(c.execute(f'SELECT trim(band), count(DISTINCT obsid) FROM "{s}".sigs GROUP BY 1'))
        n_hists = c.execute(f'SELECT count(DISTINCT obsid) FROM "{s}".hists').fetchone()[0]
        counts = [c.execute(f'SELECT count(*) FROM "{s}".{t}').fetchone()[0] for t in ("sigs", "hists")]
        # the real LPIS maize parcel on one cloud-free-or-not date: compare with the files
        pid, wkb = c.execute(f"""SELECT ogc_fid, ST_AsBinary(wkb_geometry) FROM "{s}".parcels
                                 WHERE kind = 'LPIS parcel'""").fetchone()
        obsid, ref, ident = c.execute(f"""SELECT id, reference, product_identifier FROM "{s}".dias_catalogue
                                         WHERE card = 's2' AND status = 'extracted' ORDER BY obstime
                                         LIMIT 1""").fetchone()
        row = c.execute(f"""SELECT count, mean, p50 FROM "{s}".sigs WHERE pid = %s AND obsid = %s
                            AND band = 'B04'""", (pid, obsid)).fetchone()
    assert scenes["s2"] > 5 and scenes["bs"] > 5 and "c6" not in scenes          # no real COH6 sample
    assert set(status) <= {"extracted", "No parcels"} and status["extracted"] >= scenes["s2"]
    assert set(bands) == {"B02", "B03", "B04", "B08", "B05", "B11", "VVb", "VHb"}
    assert bands["B04"] == bands["B11"] == n_hists == scenes["s2"]              # every S2 scene, all bands
    assert bands["VVb"] == bands["VHb"] == scenes["bs"]
    jp2 = next((SAMPLE / "eodata" / ident.removeprefix("/eodata/")).rglob("*_B04_10m.jp2"))
    expect = zonal_stats(str(jp2), [shapely.from_wkb(bytes(wkb))], nodata=0)[0]
    assert row[0] == expect["count"] == 252                                      # SOURCE.md: 252 pixels
    assert row[1] == pytest.approx(expect["mean"], rel=1e-6) and row[2] == pytest.approx(expect["p50"], rel=1e-6)
    # The AOI report (summary.json of the demo) agrees with the tables.
    from cbm_ops.analyst.report import aoi_report
    from cbm_ops.config import get_aoi

    rep = aoi_report(db_url, get_aoi("test_flanders"))
    assert rep["scenes_per_card"] == {"s2": scenes["s2"], "bs": scenes["bs"], "c6": 0}
    assert rep["scenes_with_all_bands"] == {"s2": scenes["s2"], "bs": scenes["bs"], "c6": 0}
    assert rep["sigs_rows"] == counts[0] and rep["hists_rows"] == counts[1] == sum(
        1 for p in rep["clear"].values() for _ in p)
    maize = next(p for p in rep["parcels"] if p["kind"] == "LPIS parcel")
    assert maize["crop"] == "Maize" and maize["s2_obs"] == scenes["s2"] and maize["s1_obs"] == scenes["bs"]
    # The completeness task ran over the run's window and says what it found.
    ti = next(t for t in run.get_task_instances() if t.task_id == "completeness")
    assert str(ti.state) == "success"
    with psycopg.connect(db_url) as c:
        harvested = c.execute(f'SELECT count(*) FROM "{s}".harvest_log WHERE status = %s', ('ok',)).fetchone()[0]
    assert harvested >= 3                                            # one logged harvest per card
    # Running the same DAG again changes no row count.
    again = run_dag("cbm_test_flanders", conf)
    assert str(again.state) == "success"
    with psycopg.connect(db_url) as c:
        assert [c.execute(f'SELECT count(*) FROM "{s}".{t}').fetchone()[0] for t in ("sigs", "hists")] == counts
    # The maintenance DAG runs on the same data (backup into a temp dir).
    m = run_dag("cbm_test_flanders_maintenance", {"backup": True})
    assert str(m.state) == "success"
    assert list(Path(test_aoi["maintenance"]["backup_dir"]).glob("*.dump"))


def test_failed_harvest_does_not_stop_extraction_but_fails_the_run(test_aoi, db_url, db_schema, tmp_path):
    from cbm_ops.config import load_aoi
    from cbm_ops.harvest import harvest

    # queue a few real scenes with the offline catalogue, then break the catalogue
    path = Path(os.environ["CBM_AOI_DIR"]) / "test_flanders.yaml"
    cfg = yaml.safe_load(path.read_text())
    offline = load_aoi(path)
    from cbm_ops.parcels import import_parcels

    import_parcels(db_url, offline)
    harvest(db_url, offline, dt.datetime(2018, 6, 1), dt.datetime(2018, 6, 10))
    cfg.update(retries=0, catalogue={"source": "resto", "retries": 0, "timeout_s": 2,
                                     "url": "http://127.0.0.1:9/resto/api/collections/{collection}/search.json"})
    path.write_text(yaml.safe_dump(cfg))
    run = run_dag("cbm_test_flanders", {"start": "2018-06-01", "end": "2018-06-10"})
    assert str(run.state) == "failed"                               # the harvests failed ...
    with psycopg.connect(db_url) as c:                              # ... the queued scenes were extracted
        status = dict(c.execute(f'SELECT status, count(*) FROM "{db_schema}".dias_catalogue GROUP BY 1'))
    assert status.get("extracted", 0) >= 3 and set(status) == {"extracted"}


def test_status_api(test_aoi, db_url, db_schema):
    from cbm_plugin import create_status_app
    from fastapi.testclient import TestClient

    from cbm_ops.config import get_aoi
    from cbm_ops.db import ensure_schema

    ensure_schema(db_url, db_schema)
    with psycopg.connect(db_url) as c:
        c.execute(f"""INSERT INTO "{db_schema}".dias_catalogue (obstime, reference, sensor, card)
                      VALUES ('2018-05-01', 'x', '2A', 's2')""")
        c.execute(f"""INSERT INTO "{db_schema}".scene_stages (obsid, stage)
                      SELECT id, 'scl' FROM "{db_schema}".dias_catalogue""")
    assert get_aoi("test_flanders").schema == db_schema
    assert TestClient(create_status_app()).get("/aois/test_flanders").status_code in (401, 403)  # login needed
    client = TestClient(create_status_app(require_auth=False))
    r = client.get("/aois/test_flanders")
    assert r.status_code == 200
    assert r.json()["stages"] == [{"card": "s2", "stage": "scl", "status": "ingested", "scenes": 1}]
    assert client.get("/aois/nope").status_code == 404


def test_docker_variant_builds_and_is_skipped_without_engine(tmp_path, airflow_env):
    cfg = yaml.safe_load(DEMO.read_text())
    cfg.update(name="docker_flanders", schema="docker_flanders",
               docker={"enabled": True, "image": "cbm-airflow:latest",
                       "mounts": [{"source": "/eodata", "target": "/eodata"}]})
    d = tmp_path / "aois"
    d.mkdir()
    (d / "docker_flanders.yaml").write_text(yaml.safe_dump(cfg))
    os.environ["CBM_AOI_DIR"] = str(d)
    try:
        from airflow.dag_processing.dagbag import DagBag

        bag = DagBag(dag_folder=str(ROOT / "dags"))
        assert bag.import_errors == {}
        dag = bag.get_dag("cbm_docker_flanders")
        t = dag.get_task("s2_10m.extract_docker")
        assert t.operator_name == "CbmDockerOperator" and t.partial_kwargs["image"] == "cbm-airflow:latest"
        assert "command" in t.template_fields
        # the database URL reaches the container only through the private environment, at execute time
        from airflow.providers.docker.operators.docker import DockerOperator

        seen = {}
        op = t.operator_class
        monkey = pytest.MonkeyPatch()
        monkey.setattr(DockerOperator, "execute", lambda self, context: seen.update(self._private_environment))
        monkey.setenv("AIRFLOW_CONN_CBM_DB", "postgresql://cbm:p%40ss@db.example:5432/cbm")
        try:
            op(task_id="probe", image="x").execute({})
        finally:
            monkey.undo()
        assert seen["CBM_DB_URL"].endswith("://cbm:p%40ss@db.example:5432/cbm")
    finally:
        os.environ["CBM_AOI_DIR"] = airflow_env["CBM_AOI_DIR"]
    docker = shutil.which("docker")
    if docker is None or subprocess.run([docker, "info"], capture_output=True).returncode != 0:
        pytest.skip("no Docker engine reachable: the containerised extraction cannot run here")
    pytest.fail("a Docker engine is reachable: run the image build and the docker DAG here")  # pragma: no cover


def test_an_invalid_aoi_file_is_an_import_error_and_leaves_the_other_dags(tmp_path, airflow_env):
    from airflow.dag_processing.dagbag import DagBag

    d = tmp_path / "aois"
    d.mkdir()
    good = yaml.safe_load(DEMO.read_text())
    good.update(name="good_one", schema="good_one")
    (d / "good_one.yaml").write_text(yaml.safe_dump(good))
    (d / "broken.yaml").write_text("start_date: 2020-01-01\ncataloge: {}\n")
    os.environ["CBM_AOI_DIR"] = str(d)
    try:
        bag = DagBag(dag_folder=str(ROOT / "dags"))
    finally:
        os.environ["CBM_AOI_DIR"] = airflow_env["CBM_AOI_DIR"]
    assert set(bag.dag_ids) == {"cbm_good_one", "cbm_good_one_maintenance"}
    assert list(bag.import_errors) == [str(ROOT / "dags" / "cbm_config_check.py")]
    msg = next(iter(bag.import_errors.values()))
    assert str(d / "broken.yaml") in msg and "cataloge" in msg
