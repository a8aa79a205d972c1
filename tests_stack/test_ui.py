"""The Airflow UI pages of the stack render for a logged-in user (headless Debian chromium).

Runs after test_stack.py (file order), on its runs: the DAG list, the run's grid, the
labelled map indexes of an extract task, the Trigger form and an extract batch's log.
"""

from __future__ import annotations

import requests
from screenshots import Browser, pages

DAG = "cbm_stack_test"
WINDOW = {"start": "2018-05-01", "end": "2018-06-01"}


def test_ui_pages_render_for_a_logged_in_user(stack, api, record):
    run = next(r for r in api.get(f"/dags/{DAG}/dagRuns")["dag_runs"] if r["conf"] == WINDOW)
    tis = sorted((t for t in api.task_instances(DAG, run["dag_run_id"]) if t["task_id"] == "s2_10m.extract"),
                 key=lambda t: t["map_index"])
    ti = tis[0]
    urls = pages(stack, DAG, run["dag_run_id"], ti["task_id"], ti["map_index"])
    token = api.token()
    assert requests.get(f"{stack.url}/api/v2/dags", timeout=30).status_code == 401   # a login is needed
    b = Browser()
    try:
        b.login(stack.url, token)
        for name, url in urls.items():
            r = requests.get(url, cookies={"_token": token}, timeout=30)
            assert r.status_code == 200, (name, r.status_code)
            b.goto(url)
            b.wait_text(DAG)
            assert DAG in b.dom(), name
            if name == "ui-mapped-labels":                  # the map indexes show their batch labels
                for t in tis:
                    b.wait_text(t["rendered_map_index"])
            if name == "ui-extract-log":                    # the log opens with the batch
                b.wait_text(f"batch {ti['rendered_map_index']}", timeout=90)
            if name == "ui-trigger-form":                   # the Params form: titles, exclusive end
                assert b.click_text("Trigger")
                b.wait_text("Window start", timeout=30)
                b.wait_text("exclusive")
        record("ui", {"pages": list(urls.values())})
    finally:
        b.close()
