"""Test harness: a throwaway PostGIS cluster for the session (CBM_TEST_DB_URL overrides).

Each test that needs the database gets its own schema (``db_schema``), so tests are
isolated without recreating the cluster.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import psycopg
import pytest

from cbm_ops.db.devdb import TempPostgis

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared" / "data"
FIXTURES = Path(__file__).resolve().parent / "fixtures"


@pytest.fixture(scope="session")
def db_url():
    url = os.environ.get("CBM_TEST_DB_URL")
    if url:
        with psycopg.connect(url, autocommit=True) as c:
            c.execute("CREATE EXTENSION IF NOT EXISTS postgis")
        yield url
        return
    pg = TempPostgis.start(dbname="cbm_test")
    try:
        yield pg.url
    finally:
        pg.stop()


@pytest.fixture
def db_schema(db_url):
    """A fresh schema name for one test; dropped afterwards."""
    name = "t_" + uuid.uuid4().hex[:10]
    yield name
    with psycopg.connect(db_url, autocommit=True) as c:
        c.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')


def shared(*parts: str) -> Path:
    """A file of ../shared/data (real input data; CI checks it out beside the project)."""
    p = SHARED.joinpath(*parts)
    if not p.exists():
        pytest.fail(f"{p} is missing: clone the shared data beside the project (../shared)")
    return p


@pytest.fixture(scope="module")
def overlap_aoi(db_url, tmp_path_factory):
    """The SYNTHETIC overlapping-granules AOI (``synthetic.build_overlap_aoi``) extracted end to end;
    yields (cfg, arrays by product, obsid by reference) and drops its schema afterwards."""
    from synthetic import build_overlap_aoi

    cfg, arrays, obsids = build_overlap_aoi(db_url, tmp_path_factory.mktemp("canon"))
    yield cfg, arrays, obsids
    with psycopg.connect(db_url, autocommit=True) as c:
        c.execute(f'DROP SCHEMA IF EXISTS "{cfg.schema}" CASCADE')
