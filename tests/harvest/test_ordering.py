"""S1 CARD ordering through the CDSE On-Demand Processing API: complement of the source
products, orders against a local ODP replay BUILT FROM THE DOCUMENTED SHAPES (no recording of
a ProductionOrder exchange exists; tests/harvest/odp_server.py says what is documented and
what is assumed), quotas, status polling, and a later harvest picking the CARD products up.
Catalogue: SYNTHETIC revisit records (tests/harvest/resto_server.py) of GRD, SLC, CARD-BS and
CARD-COH6 products, and the REAL CREODIAS OData page of IW GRDH products for the OData search.
"""

from __future__ import annotations

import datetime as dt
import json
from types import SimpleNamespace

import psycopg
import pytest
import yaml
from conftest import shared
from odata_server import ODataServer
from odp_server import OdpServer
from resto_server import RestoServer, s1_revisit_records
from synthetic import set_aoi

from cbm_ops.cli import main
from cbm_ops.config import AoiConfig
from cbm_ops.db import ConfigError
from cbm_ops.harvest import catalogue, ordering

FLANDERS = "POLYGON((3.0 50.7, 4.2 50.7, 4.2 51.2, 3.0 51.2, 3.0 50.7))"
T0, T1 = dt.datetime(2024, 1, 1), dt.datetime(2024, 2, 29, 23, 59)


def cfg_for(schema, resto, orders=None, **ordering_kw) -> AoiConfig:
    o = {"enabled": True, "source_product_types": {"bs": "GRD", "c6": "SLC"},     # the resto replay's types
         "max_products_per_run": 2000}
    if orders is not None:
        o.update(url=orders.api, token_url=orders.token_url)
    o.update(ordering_kw)
    return AoiConfig.model_validate({
        "name": "t", "schema": schema, "start_date": "2024-01-01", "cards": ["bs", "c6"],
        "catalogue": {"source": "resto", "url": resto.url + "/resto/api/collections/{collection}/search.json",
                      "retries": 0, "page_size": 50},
        "ordering": o})


def catalogue_records():
    """GRD/SLC of every pass; CARD products exist for the January passes only."""
    grd, slc = s1_revisit_records(T0, T1, "GRD"), s1_revisit_records(T0, T1, "SLC")
    bs = [r for r in s1_revisit_records(T0, T1, "CARD-BS") if r["startDate"] < "2024-01-20"]
    c6 = [r for r in s1_revisit_records(T0, T1, "CARD-COH6") if r["startDate"] < "2024-01-10"]
    return grd, slc, bs, c6


def name(r):
    return r["title"].removesuffix(".SAFE")


def client(cfg, srv, password="s3cret!"):
    return ordering.client_from_connection(cfg, SimpleNamespace(
        host=srv.api, login="agency@example.eu", password=password, extra_dejson={"token_url": srv.token_url}))


def items(db_url, schema):
    with psycopg.connect(db_url) as c:
        return dict(c.execute(f'SELECT source_reference, status FROM "{schema}".card_order_items').fetchall())


def test_identity_matches_source_and_card_names():
    grd = "S1A_IW_GRDH_1SDV_20200510T063052_20200510T063117_032499_03C37F_5E9B"   # real (ec-jrc/cbm)
    assert ordering.s1_identity(grd) == ordering.s1_identity(grd + "_CARD_BS") == \
        "S1A_20200510T063052_20200510T063117_032499_03C37F"
    assert ordering.s1_identity(grd.replace("_5E9B", "_1234") + "_CARD_BS") == ordering.s1_identity(grd)
    grds, slcs = s1_revisit_records(T0, T1, "GRD"), s1_revisit_records(T0, T1, "SLC")
    assert not {ordering.s1_identity(name(r)) for r in grds} & {ordering.s1_identity(name(r)) for r in slcs}
    assert ordering.s1_identity("S2A_MSIL2A_20210401T110621_N0300_R137_T30TTM_20210401T141035") is None


def test_plan_is_the_complement(db_url, db_schema):
    grd, slc, bs, c6 = catalogue_records()
    with RestoServer(grd + slc + bs + c6, page_max=50, cap=1000) as resto:
        cfg = cfg_for(db_schema, resto)
        set_aoi(db_url, cfg, FLANDERS)
        catalogue.harvest(db_url, cfg, T0, T1)
        p = ordering.plan(db_url, cfg, T0, T1)
    have_bs = {ordering.s1_identity(r["title"]) for r in bs}
    have_c6 = {ordering.s1_identity(r["title"]) for r in c6}
    want_bs = [name(r) for r in grd if ordering.s1_identity(name(r)) not in have_bs]
    want_c6 = [name(r) for r in slc if ordering.s1_identity(name(r)) not in have_c6]
    assert [s.reference for s in p.cards["bs"].to_order] == want_bs and len(want_bs) == len(grd) - len(bs)
    assert [s.reference for s in p.cards["c6"].to_order] == want_c6 and len(want_c6) == len(slc) - len(c6)
    assert (p.cards["bs"].found, p.cards["bs"].have_card) == (len(grd), len(bs))


def publisher(resto):
    """on_done of the ODP replay: the completed CARD product appears in the catalogue."""
    cards = {ordering.s1_identity(name(r)): r for r in s1_revisit_records(T0, T1, "CARD-BS")}

    def publish(order, output):
        resto.records.append(cards[ordering.s1_identity(output)])
    return publish


def test_orders_within_quotas_poll_and_later_harvest(db_url, db_schema, caplog):
    grd, slc, bs, c6 = catalogue_records()
    with RestoServer(grd + slc + bs + c6, page_max=50, cap=1000) as resto, OdpServer() as srv:
        cfg = cfg_for(db_schema, resto, srv, cards=["bs"])
        set_aoi(db_url, cfg, FLANDERS)
        catalogue.harvest(db_url, cfg, T0, T1)
        cl = client(cfg, srv)
        todo = [name(r) for r in grd if ordering.s1_identity(name(r)) not in
                {ordering.s1_identity(b["title"]) for b in bs}]
        with caplog.at_level("DEBUG"):
            rep = ordering.run_ordering(db_url, cfg, T0, T1, cl)
        # 2 concurrent items: the first two products now, 10 held for later runs
        assert len(todo) == 12 and rep.problems == [] and rep.held == 10
        assert [o["reference"] for o in rep.orders] == todo[:2]
        assert {o["WorkflowName"] for o in srv.orders.values()} == {"card_bs"}     # found by OutputProductType
        assert [o["InputProductReference"]["Reference"] for o in srv.orders.values()] == [t + ".SAFE" for t in todo[:2]]
        assert rep.quota == {"monthly_quota": 25, "used_this_month": 2, "left_this_month": 23, "max_concurrent": 2,
                             "in_progress": 2, "submitted_now": 2}
        assert set(items(db_url, db_schema).values()) == {"queued"}
        logged = "\n".join(r.getMessage() for r in caplog.records)
        assert "s3cret!" not in logged and "tok-1" not in logged and "ODP quota: 2 of 25" in logged
        # a second run orders nothing (both slots taken) and sends no order
        again = ordering.run_ordering(db_url, cfg, T0, T1, cl)
        assert again.orders == [] and srv.order_posts() == 2 and again.held == 10
        # the service completes the first order (its CARD product is published) and fails the second
        first, second = sorted(srv.orders, key=int)
        srv.on_done = publisher(resto)
        srv.process(first, "completed")
        srv.process(second, "failed", "Processing failed: input product corrupted")
        polled = {p["remote_id"]: p for p in ordering.poll(db_url, cfg, cl, force=True)}
        assert polled[first]["status"] == "completed" and polled[first]["items"] == {"done": 1}
        assert polled[second]["items"] == {"failed": 1} and polled[second]["finished"]
        assert polled[second]["error"] == "failed at the ODP service: Processing failed: input product corrupted"
        with psycopg.connect(db_url) as c:
            processed = c.execute(f'SELECT processed_name FROM "{db_schema}".card_order_items '
                                  'WHERE remote_item_id = %s', (first,)).fetchone()[0]
        assert processed == todo[0] + "_CARD_BS"
        # polling again within poll_interval_minutes asks the API nothing
        n = len(srv.requests)
        assert ordering.poll(db_url, cfg, cl) == [] and len(srv.requests) == n
        # the next run has two free slots again
        rep = ordering.run_ordering(db_url, cfg, T0, T1, cl)
        assert [o["reference"] for o in rep.orders] == todo[2:4] and rep.quota["used_this_month"] == 4
        # a scheduled run's window reaches back to the oldest ordered product not harvested yet
        sensed = {n: dt.datetime.strptime(n.split("_")[4], "%Y%m%dT%H%M%S") for n in todo}
        run = (dt.datetime(2024, 2, 20), T1)
        s, e, why = catalogue.widened_window(db_url, cfg, "bs", *run)
        assert s == sensed[todo[0]] - dt.timedelta(hours=1) and "ordered from the DIAS" in why
        h = catalogue.harvest(db_url, cfg, s, e, widened_from=run[0], note=why)
        assert h.inserted == 1
        st = items(db_url, db_schema)
        assert st[todo[0]] == "harvested" and st[todo[1]] == "failed"
        # the failed product is not ordered again by default, and is with reorder_failed
        assert todo[1] not in [sp.reference for sp in ordering.plan(db_url, cfg, T0, T1).cards["bs"].to_order]
        again_cfg = cfg.model_copy(update={"ordering": cfg.ordering.model_copy(update={"reorder_failed": True})})
        assert todo[1] in [sp.reference for sp in ordering.plan(db_url, again_cfg, T0, T1).cards["bs"].to_order]
        # one password login for the whole test: the token is cached
        assert srv.grants == ["password"] and cl.logins == 1


def test_monthly_quota_prose_statuses_and_token_refresh(db_url, db_schema):
    grd, slc, bs, c6 = catalogue_records()
    with RestoServer(grd + bs, page_max=50, cap=1000) as resto, OdpServer(prose_statuses=True) as srv:
        cfg = cfg_for(db_schema, resto, srv, cards=["bs"], monthly_quota=3, max_concurrent=2)
        set_aoi(db_url, cfg, FLANDERS)
        catalogue.harvest(db_url, cfg, T0, T1)
        cl = client(cfg, srv)
        assert len(ordering.run_ordering(db_url, cfg, T0, T1, cl).orders) == 2
        first, second = sorted(srv.orders, key=int)
        srv.process(first, "in_progress")          # written "in progress" (the doc's prose)
        srv.process(second, "completed")           # written "complete"
        polled = {p["remote_id"]: p for p in ordering.poll(db_url, cfg, cl, force=True)}
        assert (polled[first]["status"], polled[second]["status"]) == ("in_progress", "completed")
        assert polled[first]["items"] == {"in_progress": 1} and not polled[first]["finished"]
        cl._token_expires = 0                      # the access token expired: renewed by its refresh token
        rep = ordering.run_ordering(db_url, cfg, T0, T1, cl)
        assert len(rep.orders) == 1 and rep.quota["left_this_month"] == 0    # 3 of 3 used this month
        assert rep.held == len(grd) - len(bs) - 3
        assert srv.grants == ["password", "refresh_token"]
        assert ordering.run_ordering(db_url, cfg, T0, T1, cl).orders == []


def test_refused_and_failed_orders(db_url, db_schema):
    grd, slc, bs, c6 = catalogue_records()
    with RestoServer(grd + bs, page_max=50, cap=1000) as resto, OdpServer(concurrent=50) as srv:
        cfg = cfg_for(db_schema, resto, srv, cards=["bs"], max_concurrent=3)
        set_aoi(db_url, cfg, FLANDERS)
        catalogue.harvest(db_url, cfg, T0, T1)
        cl = client(cfg, srv)
        # refused (HTTP 403): recorded with the API's reason; the product stays orderable
        srv.refuse_next = (403, "Quota exceeded: at most 25 orders per month")
        rep = ordering.run_ordering(db_url, cfg, T0, T1, cl)
        assert [o["status"] for o in rep.orders] == ["refused", "queued", "queued"]
        assert len(rep.problems) == 1 and "HTTP 403: Quota exceeded" in rep.problems[0]
        with psycopg.connect(db_url) as c:
            row = c.execute(f'SELECT status, http_status, remote_id, error FROM "{db_schema}".card_orders '
                            "ORDER BY id LIMIT 1").fetchone()
        assert row == ("refused", 403, None, "Quota exceeded: at most 25 orders per month")
        # a 500 is not retried (no double order); the run's remaining orders wait
        srv.fail_next = True
        posts = srv.order_posts()
        rep = ordering.run_ordering(db_url, cfg, T0, T1, cl)
        assert [o["status"] for o in rep.orders] == ["error"] and srv.order_posts() == posts + 1
        assert "HTTP 500" in rep.problems[0]
        # an unknown workflow is refused by the API (HTTP 400)
        bad = cfg.model_copy(update={"ordering": cfg.ordering.model_copy(update={"workflows": {"bs": "card_bz"}})})
        rep = ordering.run_ordering(db_url, bad, T0, T1, cl)
        assert rep.orders[0]["status"] == "refused" and "Workflow card_bz not found" in rep.problems[0]
        # a wrong password is a clear error that does not show the password; nothing recorded
        with psycopg.connect(db_url) as c:
            c.execute(f"UPDATE \"{db_schema}\".card_order_items SET status = 'done'")
            n_orders = c.execute(f'SELECT count(*) FROM "{db_schema}".card_orders').fetchone()[0]
        with pytest.raises(ordering.OrderAuthError, match="login .* refused .* 2FA") as e:
            ordering.run_ordering(db_url, cfg, T0, T1, client(cfg, srv, password="wrong-pw"))
        assert "wrong-pw" not in str(e.value) and "wrong-pw" not in repr(client(cfg, srv, "wrong-pw"))
        with psycopg.connect(db_url) as c:
            assert c.execute(f'SELECT count(*) FROM "{db_schema}".card_orders').fetchone()[0] == n_orders


def test_interrupted_submission_heals(db_url, db_schema):
    grd, slc, bs, c6 = catalogue_records()
    with RestoServer(grd + bs, page_max=50, cap=1000) as resto, OdpServer() as srv:
        cfg = cfg_for(db_schema, resto, srv, cards=["bs"], max_concurrent=1)
        set_aoi(db_url, cfg, FLANDERS)
        catalogue.harvest(db_url, cfg, T0, T1)
        p = ordering.plan(db_url, cfg, T0, T1)

        class Crash(ordering.OrderClient):
            def create(self, *a, **kw):
                raise KeyboardInterrupt    # the task was killed during the request

        with pytest.raises(KeyboardInterrupt):
            ordering.submit(db_url, cfg, p, Crash(srv.api, "agency@example.eu", "s3cret!", token_url=srv.token_url))
        assert set(items(db_url, db_schema).values()) == {"submitting"}
        # blocked, not doubled: the stuck item is not planned again and takes the only slot
        assert p.cards["bs"].to_order[0].reference not in [
            sp.reference for sp in ordering.plan(db_url, cfg, T0, T1).cards["bs"].to_order]
        assert ordering.run_ordering(db_url, cfg, T0, T1, client(cfg, srv)).orders == []
        with psycopg.connect(db_url) as c:
            c.execute(f"UPDATE \"{db_schema}\".card_orders SET submitted_at = now() - interval '2 hours'")
        rep = ordering.run_ordering(db_url, cfg, T0, T1, client(cfg, srv))
        assert [o["status"] for o in rep.orders] == ["queued"] and len(srv.orders) == 1
        status = ordering.order_status(db_url, cfg)
        assert status[-1]["status"] == "error" and "outcome unknown" in status[-1]["error"]


def test_dry_run_disabled_and_cli(db_url, db_schema, tmp_path, monkeypatch, capsys):
    grd, slc, bs, c6 = catalogue_records()
    with RestoServer(grd + slc + bs + c6, page_max=50, cap=1000) as resto, OdpServer() as srv:
        cfg = cfg_for(db_schema, resto, srv, max_concurrent=50, monthly_quota=50)
        srv.concurrent = srv.monthly = 50
        set_aoi(db_url, cfg, FLANDERS)
        catalogue.harvest(db_url, cfg, T0, T1)
        rep = ordering.run_ordering(db_url, cfg, T0, T1, None, dry_run=True)
        assert rep.dry_run and {o["status"] for o in rep.orders} == {"dry-run"} and srv.requests == []
        assert items(db_url, db_schema) == {}
        off = cfg.model_copy(update={"ordering": cfg.ordering.model_copy(update={"enabled": False})})
        with pytest.raises(ConfigError, match="ordering is off"):
            ordering.run_ordering(db_url, off, T0, T1, client(cfg, srv))
        # CLI: credentials from AIRFLOW_CONN_CBM_ORDER (JSON form), as the DAG's connection
        path = tmp_path / "t.yaml"
        path.write_text(yaml.safe_dump(json.loads(cfg.model_dump_json(by_alias=True, exclude_defaults=True))))
        monkeypatch.delenv("AIRFLOW_CONN_CBM_ORDER", raising=False)
        base = ["--aoi", str(path), "--db-url", db_url, "--start", "2024-01-01", "--end", "2024-02-29T23:59"]
        assert main(["order", *base]) == 2                                  # no credentials: one-line error
        assert main(["order", *base, "--dry-run"]) == 0
        out = json.loads(capsys.readouterr().out)
        assert out["plan"]["cards"]["bs"]["to_order"] == len(grd) - len(bs)
        monkeypatch.setenv("AIRFLOW_CONN_CBM_ORDER", json.dumps({
            "conn_type": "http", "host": srv.api, "login": "agency@example.eu", "password": "s3cret!",
            "extra": {"token_url": srv.token_url}}))
        assert main(["order", *base]) == 0
        out = json.loads(capsys.readouterr().out)
        assert len(out["orders"]) == (len(grd) - len(bs)) + (len(slc) - len(c6))
        assert main(["order-status", "--aoi", str(path), "--db-url", db_url]) == 0
        status = json.loads(capsys.readouterr().out)
        assert {s["status"] for s in status} == {"queued"}
        assert {s["processor"] for s in status} == {"card_bs", "card_coh6"}


def test_client_from_an_airflow_style_connection():
    cfg = AoiConfig.model_validate({"name": "t", "start_date": "2024-01-01", "ordering": {"enabled": True}})
    c = ordering.client_from_connection(cfg, SimpleNamespace(host="odp.dataspace.copernicus.eu", schema=None,
                                                             port=None, login="u", password="p", extra_dejson={}))
    assert c.url == "https://odp.dataspace.copernicus.eu/odata/v1"
    assert c.token_url == "https://identity.dataspace.copernicus.eu/auth/realms/CDSE/protocol/openid-connect/token"
    assert c.client_id == "cdse-public"
    c = ordering.client_from_connection(cfg, SimpleNamespace(host=None, login="u", password="p"))
    assert c.url == cfg.ordering.url
    with pytest.raises(ConfigError, match="login and a password"):
        ordering.client_from_connection(cfg, SimpleNamespace(host=None, login="u", password=None))


def test_status_spellings_are_normalised():
    assert [ordering.odp_status(s) for s in ("queued", "in_progress", "in progress", "completed", "complete",
                                             "Failed", "cancelled", "canceled", None)] == [
        "queued", "in_progress", "in_progress", "completed", "completed", "failed", "cancelled", "cancelled",
        "unknown"]


def test_plan_searches_odata_for_the_real_grd_records(db_url, db_schema):
    """The REAL CREODIAS OData page of 10 IW GRDH products: the plan finds all 10 through
    the OData source (productType IW_GRDH_1S) and would order each."""
    page = json.loads(shared("catalogue-responses", "eodag-provider-responses",
                             "eodag_search_result_creodias.json").read_text())
    with ODataServer(pool=page["value"]) as od:
        cfg = AoiConfig.model_validate({
            "name": "t", "schema": db_schema, "start_date": "2014-10-01", "cards": ["bs"],
            "catalogue": {"source": "odata", "url": od.url}, "ordering": {"enabled": True}})
        set_aoi(db_url, cfg, "POLYGON((-110 20, -95 20, -95 45, -110 45, -110 20))")   # all 10 footprints
        p = ordering.plan(db_url, cfg, dt.datetime(2014, 10, 4), dt.datetime(2014, 10, 5))
        flt = od.requests[0]
    assert p.cards["bs"].found == 10 and len(p.cards["bs"].to_order) == 10
    assert [sp.reference for sp in p.cards["bs"].to_order] == [v["Name"].removesuffix(".SAFE") for v in page["value"]]
    assert "IW_GRDH_1S" in flt and "SENTINEL-1" in flt
