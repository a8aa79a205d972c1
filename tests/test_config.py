"""Configuration files, database URL resolution."""

from __future__ import annotations

import json

import pytest

from cbm_ops import db
from cbm_ops.config import ConfigError, load_all, load_aoi


@pytest.mark.parametrize("url,expect", [
    ("postgresql+psycopg://u:p@h:5432/d", "postgresql://u:p@h:5432/d"),        # PostgresHook + psycopg 3
    ("postgres://u@h/d", "postgresql://u@h/d"),
    ("postgresql://u@h/d?__extra__=%7B%7D&sslmode=require", "postgresql://u@h/d?sslmode=require"),
])
def test_airflow_urls_become_libpq_urls(url, expect):
    assert db.libpq_url(url) == expect


def test_db_url_from_airflow_connection_env(monkeypatch):
    monkeypatch.delenv("CBM_DB_URL", raising=False)
    monkeypatch.setenv("AIRFLOW_CONN_MY_DB", json.dumps(
        {"conn_type": "postgres", "login": "cbm", "password": "p@ss/word", "host": "db", "port": 5433,
         "schema": "cbm"}))
    assert db.db_url_from_env("my_db") == "postgresql://cbm:p%40ss%2Fword@db:5433/cbm"
    monkeypatch.delenv("AIRFLOW_CONN_MY_DB")
    with pytest.raises(db.ConfigError, match="CBM_DB_URL"):
        db.db_url_from_env("my_db")


def test_project_aoi_files_are_valid():
    aois = load_all()
    assert "demo_flanders" in aois
    cfg = aois["demo_flanders"]
    assert cfg.stages == ("scl", "s2_10m", "s2_20m", "bs", "c6")
    assert cfg.stored_bands("bs") == ("VVb", "VHb") and cfg.stored_bands("c6") == ("VVc", "VHc")
    assert cfg.resolve(cfg.parcels.source).exists() and cfg.resolve(cfg.store.root).is_dir()


@pytest.mark.parametrize("text,message", [
    ("start_date: 2020-01-01\ncataloge: {}\n", "cataloge"),                     # typo is an error
    ("start_date: 2020-01-01\nbands: {s2_10m: [B05]}\n", "B05 is a 20 m band"),
    ("start_date: 2020-01-01\nbands: {bs: [HH]}\n", "VV and VH"),
    ("start_date: 2020-01-01\ncatalogue: {source: offline}\n", "needs catalogue.path"),
    ("name: Bad-Name\nstart_date: 2020-01-01\n", "lower-case"),
    ("start_date: 2020-01-01\nend_date: 2019-01-01\n", "before start_date"),
])
def test_invalid_aoi_files_give_clear_errors(tmp_path, text, message):
    f = tmp_path / "x.yaml"
    f.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_aoi(f)


def test_two_aois_cannot_share_a_schema(tmp_path):
    (tmp_path / "a.yaml").write_text("start_date: 2020-01-01\nschema: s\n")
    (tmp_path / "b.yaml").write_text("start_date: 2020-01-01\nschema: s\n")
    with pytest.raises(ConfigError, match="already used"):
        load_all(tmp_path)


def test_one_invalid_aoi_file_leaves_the_others_loadable(tmp_path):
    from cbm_ops.config import load_valid

    (tmp_path / "good.yaml").write_text("start_date: 2020-01-01\n")
    (tmp_path / "broken.yaml").write_text("start_date: 2020-01-01\ncataloge: {}\n")
    (tmp_path / "twin.yaml").write_text("start_date: 2020-01-01\nschema: good\n")
    (tmp_path / "table.yaml").write_text("start_date: 2020-01-01\nparcels: {table: sigs}\n")
    aois, errors = load_valid(tmp_path)
    assert list(aois) == ["good"]
    assert {k.rsplit("/", 1)[1]: v for k, v in errors.items()}.keys() == {"broken.yaml", "twin.yaml", "table.yaml"}
    assert all(k in v for k, v in errors.items())                    # each message names its file
    assert "cataloge" in errors[str(tmp_path / "broken.yaml")]
    assert "already used by AOI 'good'" in errors[str(tmp_path / "twin.yaml")]
    assert "table of cbm-airflow" in errors[str(tmp_path / "table.yaml")]


def test_threads_per_task_follow_worker_slots(monkeypatch):
    from cbm_ops.extract import threads as runtime

    for var in ("CBM_THREADS_PER_TASK", "AIRFLOW__CELERY__WORKER_CONCURRENCY", "AIRFLOW__CORE__EXECUTOR"):
        monkeypatch.delenv(var, raising=False)
    n = runtime.cpus()
    assert runtime.threads_per_task() == n                       # CLI: every CPU
    assert runtime.threads_per_task(configured=1) == 1            # the AOI's threads_per_task
    monkeypatch.setenv("AIRFLOW__CELERY__WORKER_CONCURRENCY", str(2 * n))
    assert runtime.threads_per_task() == 1                        # more slots than CPUs: one each
    monkeypatch.setenv("AIRFLOW__CELERY__WORKER_CONCURRENCY", "1")
    assert runtime.threads_per_task() == n
    monkeypatch.setenv("CBM_THREADS_PER_TASK", "3")
    assert runtime.threads_per_task(configured=1) == 3            # the environment wins
    import numba
    monkeypatch.setenv("CBM_THREADS_PER_TASK", "1")
    assert runtime.configure_threads() == 1 and numba.get_num_threads() == 1
    assert __import__("os").environ["GDAL_NUM_THREADS"] == "1"
    numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)


def test_viewer_background_needs_a_tile_template(tmp_path):
    """The viewer fetches nothing from outside unless the AOI names an http(s) XYZ template."""
    import pytest

    from cbm_ops.config import ViewerConfig

    assert ViewerConfig().background_tiles is None and ViewerConfig().min_zoom == 12
    ok = ViewerConfig(background_tiles="https://tiles.example/ortho/{z}/{x}/{-y}.png")
    assert ok.background_tiles.endswith("{-y}.png")
    for bad in ("tiles.example/{z}/{x}/{y}.png", "https://tiles.example/ortho.png", "javascript:alert(1)//{z}{x}{y}",
                'https://x.example/{z}/{x}/{y}.png"><script>'):
        with pytest.raises(ValueError, match="tile template"):
            ViewerConfig(background_tiles=bad)
