"""Stack integration tests: a real CeleryExecutor deployment (scripts/stack.py) for the session.

The stack runs the DAGs of three copies of the demo AOI, each with its own schema in the
stack's results PostGIS:

* ``stack_test``: scenarios 1 (trigger with Params, both workers), 3 (backfill) and 5 (pool);
* ``stack_cont``: scenario 2 (unpausing creates a scheduled run); open campaign (no end_date),
  never harvested, so the scheduled run widens its harvest window (bounded to ``WIDEN_DAYS``);
* ``stack_kill``: scenario 4 (a worker host dies mid-batch); manual only, one batch per stage.

Test settings (environment overrides of the stack): a 20 s task heartbeat timeout (Airflow
default 300 s), so a dead worker's task is noticed quickly, and a 2-slot extraction pool for
a 2 x 2 slot worker fleet. State, component logs and task logs stay in stack-test-output/;
``scenarios.json`` there has the wall time and findings of every scenario.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import psycopg
import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "scripts"), str(ROOT)]

import stack as stack_mod  # noqa: E402

STATE = ROOT / "stack-test-output"
DEMO = ROOT / "include" / "aois" / "demo_flanders.yaml"
POOL_SLOTS = 2
HEARTBEAT_TIMEOUT_S = 20
WIDEN_DAYS = 30
OVERRIDES = {
    "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": str(HEARTBEAT_TIMEOUT_S),
    "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL": "5",
    "CBM_POOL_SLOTS": str(POOL_SLOTS),
}


def _aoi(name: str, **changes) -> dict:
    cfg = yaml.safe_load(DEMO.read_text())
    cfg.update(name=name, schema=name, description=f"stack test AOI {name} (copy of demo_flanders)",
               cards=["s2", "bs"], tags=["stack-test"], max_active_runs=2, retries=2,
               extract_retry_delay_minutes=0.1)
    cfg["bands"].pop("c6")
    cfg["maintenance"]["backup_dir"] = None
    cfg.update(changes)
    return cfg


AOIS = {
    "stack_test": _aoi("stack_test", batch_size=2),
    # open campaign never harvested: its first scheduled run widens back, bounded here to
    # WIDEN_DAYS (unbounded it would reach start_date 2017 and harvest the whole sample)
    "stack_cont": _aoi("stack_cont", batch_size=2, end_date=None, harvest={"max_widen_days": WIDEN_DAYS}),
    "stack_kill": _aoi("stack_kill", batch_size=20, schedule=None),
}


@pytest.fixture(scope="session")
def stack():
    """The running stack; stopped (and its clusters removed) at the end of the session."""
    if stack_mod.load(STATE) is not None:
        stack_mod.stop(STATE, quiet=True)
    aoi_dir = STATE / "aois"
    aoi_dir.mkdir(parents=True, exist_ok=True)
    for f in aoi_dir.glob("*.yaml"):
        f.unlink()
    for name, cfg in AOIS.items():
        (aoi_dir / f"{name}.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    t0 = time.monotonic()
    st = stack_mod.start(STATE, aoi_dir=aoi_dir, overrides=OVERRIDES, quiet=True)
    Scenarios.record("start", {"wall_s": round(time.monotonic() - t0, 1)})
    try:
        yield st
    finally:
        stack_mod.stop(STATE, quiet=True)


@pytest.fixture(scope="session")
def api(stack):
    return stack.api


@pytest.fixture(scope="session")
def db(stack):
    with psycopg.connect(stack.results_url, autocommit=True) as conn:
        yield conn


class Scenarios:
    """Findings of the scenarios (wall times, hosts per map index, comparisons)."""

    data: dict = {}

    @classmethod
    def record(cls, name: str, value: dict) -> None:
        cls.data.setdefault(name, {}).update(value)
        STATE.mkdir(exist_ok=True)
        (STATE / "scenarios.json").write_text(json.dumps(cls.data, indent=2, default=str))


@pytest.fixture
def record():
    return Scenarios.record
