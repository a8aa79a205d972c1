"""S1 CARD ordering: complement of the source products, orders against a local order API
(tests/harvest/order_server.py: token, create, summary, items, refusals, failures), status polling,
and a later harvest picking the CARD products up. Catalogue: SYNTHETIC revisit records
(tests/harvest/resto_server.py) of GRD, SLC, CARD-BS and CARD-COH6 products.
"""

from __future__ import annotations

import datetime as dt
import json
from types import SimpleNamespace

import psycopg
import pytest
import yaml
from order_server import OrderServer
from resto_server import RestoServer, s1_revisit_records
from synthetic import set_aoi

from cbm_ops.cli import main
from cbm_ops.config import AoiConfig
from cbm_ops.db import ConfigError
from cbm_ops.harvest import catalogue, ordering

FLANDERS = "POLYGON((3.0 50.7, 4.2 50.7, 4.2 51.2, 3.0 51.2, 3.0 50.7))"
T0, T1 = dt.datetime(2024, 1, 1), dt.datetime(2024, 2, 29, 23, 59)


def cfg_for(schema, resto, orders=None, **ordering_kw) -> AoiConfig:
    o = {"enabled": True, "max_products_per_order": 4}
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
        host=srv.api, login="agency", password=password, extra_dejson={"token_url": srv.token_url}))


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


def test_order_poll_and_later_harvest(db_url, db_schema, caplog):
    grd, slc, bs, c6 = catalogue_records()
    with RestoServer(grd + slc + bs + c6, page_max=50, cap=1000) as resto, OrderServer() as srv:
        cfg = cfg_for(db_schema, resto, srv, cards=["bs"])
        set_aoi(db_url, cfg, FLANDERS)
        catalogue.harvest(db_url, cfg, T0, T1)
        cl = client(cfg, srv)
        with caplog.at_level("DEBUG"):
            rep = ordering.run_ordering(db_url, cfg, T0, T1, cl)
        todo = [name(r) for r in grd if ordering.s1_identity(name(r)) not in
                {ordering.s1_identity(b["title"]) for b in bs}]
        assert rep.problems == [] and sum(o["products"] for o in rep.orders) == len(todo) == 12
        assert [o["products"] for o in rep.orders] == [4, 4, 4]             # max_products_per_order
        assert sorted(n for o in srv.orders.values() for n in (i["name"] for i in o["items"])) == sorted(todo)
        assert {o["processor"] for o in srv.orders.values()} == {"card_bs"}
        assert set(items(db_url, db_schema).values()) == {"ordered"}
        # credentials never reach the log
        logged = "\n".join(r.getMessage() for r in caplog.records)
        assert "s3cret!" not in logged and "tok-1" not in logged
        # a second run orders nothing again (all in flight)
        again = ordering.run_ordering(db_url, cfg, T0, T1, cl)
        assert again.orders == [] and srv.order_posts() == 3
        # the DIAS processes the first order: 3 done, 1 failed; the done ones appear in the catalogue
        first = min(srv.orders)
        names = [i["name"] for i in srv.orders[first]["items"]]
        card_of = {name(r): r for r in s1_revisit_records(T0, T1, "CARD-BS")}

        def publish(item, pname):
            rec = next(r for r in card_of.values() if ordering.s1_identity(r["title"]) ==
                       ordering.s1_identity(pname))
            resto.records.append(rec)

        srv.on_done = publish
        srv.process(first, done=names[:3], failed=names[3:])
        srv.process(first + 1, processing=[i["name"] for i in srv.orders[first + 1]["items"]])
        polled = ordering.poll(db_url, cfg, cl, force=True)
        by_id = {p["remote_id"]: p for p in polled}
        assert by_id[str(first)]["items"] == {"done": 3, "failed": 1} and by_id[str(first)]["finished"]
        assert by_id[str(first)]["status"] == "done_with_error"
        assert "failed" in by_id[str(first)]["error"]
        assert by_id[str(first + 1)]["items"] == {"processing": 4}
        # polling again within poll_interval_minutes asks the API nothing
        n = len(srv.requests)
        assert ordering.poll(db_url, cfg, cl) == [] and len(srv.requests) == n
        # a scheduled run's window reaches back to the oldest ordered product not harvested yet
        # (its CARD product carries the GRD's sensing time, older than the look-back)
        sensed = {n: dt.datetime.strptime(n.split("_")[4], "%Y%m%dT%H%M%S") for n in todo}
        run = (dt.datetime(2024, 2, 20), T1)
        s, e, why = catalogue.widened_window(db_url, cfg, "bs", *run)
        assert s == sensed[todo[0]] - dt.timedelta(hours=1) and "ordered from the DIAS" in why
        # a later harvest picks the CARD products up and marks the items harvested
        h = catalogue.harvest(db_url, cfg, s, e, widened_from=run[0], note=why)
        assert h.inserted == 3
        st = items(db_url, db_schema)
        assert sorted(k for k, v in st.items() if v == "harvested") == sorted(names[:3])
        assert st[names[3]] == "failed"
        # now the oldest outstanding product is the first of the second order
        assert names == todo[:4]
        assert catalogue.widened_window(db_url, cfg, "bs", *run)[0] == sensed[todo[4]] - dt.timedelta(hours=1)
        with psycopg.connect(db_url) as c:
            linked = c.execute(f'''SELECT count(*) FROM "{db_schema}".card_order_items i
                                   JOIN "{db_schema}".dias_catalogue d ON d.id = i.obsid
                                   WHERE d.reference = i.source_reference || '_CARD_BS' ''').fetchone()[0]
        assert linked == 3
        # the failed product is not ordered again by default, and is with reorder_failed
        assert ordering.plan(db_url, cfg, T0, T1).cards["bs"].to_order == []
        again = cfg.model_copy(update={"ordering": cfg.ordering.model_copy(update={"reorder_failed": True})})
        assert [s.reference for s in ordering.plan(db_url, again, T0, T1).cards["bs"].to_order] == names[3:]
        status = ordering.order_status(db_url, cfg)
        assert len(status) == 3 and status[-1]["items"] == {"harvested": 3, "failed": 1}


def test_refused_and_failed_orders(db_url, db_schema):
    grd, slc, bs, c6 = catalogue_records()
    with RestoServer(grd + bs, page_max=50, cap=1000) as resto, OrderServer() as srv:
        cfg = cfg_for(db_schema, resto, srv, cards=["bs"], max_products_per_order=10)
        set_aoi(db_url, cfg, FLANDERS)
        catalogue.harvest(db_url, cfg, T0, T1)
        cl = client(cfg, srv)
        # refused (HTTP 403): recorded with the API's reason; the products stay orderable
        srv.refuse_next = (403, "Insufficient funds on the billing account")
        rep = ordering.run_ordering(db_url, cfg, T0, T1, cl)
        assert rep.orders[0]["status"] == "refused" and rep.orders[1]["status"] == "queued"
        assert len(rep.problems) == 1 and "HTTP 403: Insufficient funds" in rep.problems[0]
        with psycopg.connect(db_url) as c:
            row = c.execute(f'SELECT status, http_status, remote_id, error FROM "{db_schema}".card_orders '
                            "ORDER BY id LIMIT 1").fetchone()
        assert row == ("refused", 403, None, "Insufficient funds on the billing account")
        # the next run orders the refused products again; a 500 is not retried (no double order)
        srv.fail_next = True
        posts = srv.order_posts()
        rep = ordering.run_ordering(db_url, cfg, T0, T1, cl)
        assert [o["status"] for o in rep.orders] == ["error"] and srv.order_posts() == posts + 1
        assert "HTTP 500" in rep.problems[0]
        rep = ordering.run_ordering(db_url, cfg, T0, T1, cl)
        assert [o["status"] for o in rep.orders] == ["queued"] and rep.problems == []
        assert len(srv.orders) == 2 and sum(len(o["items"]) for o in srv.orders.values()) == len(grd) - len(bs)
        # an unknown processor is refused by the API (HTTP 400)
        bad = cfg.model_copy(update={"ordering": cfg.ordering.model_copy(update={"processors": {"bs": "card_bz"}})})
        srv.known = set()
        with psycopg.connect(db_url) as c:   # make the products orderable again
            c.execute(f"UPDATE \"{db_schema}\".card_order_items SET status = 'error'")
        rep = ordering.run_ordering(db_url, bad, T0, T1, cl)
        assert rep.orders[0]["status"] == "refused" and "Unknown processor: card_bz" in rep.problems[0]
        # a wrong password is a clear error that does not show the password
        with psycopg.connect(db_url) as c:
            c.execute(f"UPDATE \"{db_schema}\".card_order_items SET status = 'error'")
            n_orders = c.execute(f'SELECT count(*) FROM "{db_schema}".card_orders').fetchone()[0]
        with pytest.raises(ordering.OrderAuthError, match="login .* refused") as e:
            ordering.run_ordering(db_url, cfg, T0, T1, client(cfg, srv, password="wrong-pw"))
        assert "wrong-pw" not in str(e.value) and "wrong-pw" not in repr(client(cfg, srv, "wrong-pw"))
        with psycopg.connect(db_url) as c:     # nothing recorded
            assert c.execute(f'SELECT count(*) FROM "{db_schema}".card_orders').fetchone()[0] == n_orders


def test_interrupted_submission_heals(db_url, db_schema):
    grd, slc, bs, c6 = catalogue_records()
    with RestoServer(grd + bs, page_max=50, cap=1000) as resto, OrderServer() as srv:
        cfg = cfg_for(db_schema, resto, srv, cards=["bs"], max_products_per_order=50)
        set_aoi(db_url, cfg, FLANDERS)
        catalogue.harvest(db_url, cfg, T0, T1)
        p = ordering.plan(db_url, cfg, T0, T1)

        class Crash(ordering.OrderClient):
            def create(self, *a, **kw):
                raise KeyboardInterrupt    # the task was killed during the request

        with pytest.raises(KeyboardInterrupt):
            ordering.submit(db_url, cfg, p, Crash(srv.api, "agency", "s3cret!", token_url=srv.token_url))
        assert set(items(db_url, db_schema).values()) == {"submitting"}
        assert ordering.plan(db_url, cfg, T0, T1).cards["bs"].to_order == []      # blocked, not doubled
        with psycopg.connect(db_url) as c:
            c.execute(f"UPDATE \"{db_schema}\".card_orders SET submitted_at = now() - interval '2 hours'")
        rep = ordering.run_ordering(db_url, cfg, T0, T1, client(cfg, srv))
        assert [o["status"] for o in rep.orders] == ["queued"] and len(srv.orders) == 1
        status = ordering.order_status(db_url, cfg)
        assert status[-1]["status"] == "error" and "outcome unknown" in status[-1]["error"]


def test_dry_run_disabled_and_cli(db_url, db_schema, tmp_path, monkeypatch, capsys):
    grd, slc, bs, c6 = catalogue_records()
    with RestoServer(grd + slc + bs + c6, page_max=50, cap=1000) as resto, OrderServer() as srv:
        cfg = cfg_for(db_schema, resto, srv)
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
            "conn_type": "http", "host": srv.api, "login": "agency", "password": "s3cret!",
            "extra": {"token_url": srv.token_url}}))
        assert main(["order", *base]) == 0
        out = json.loads(capsys.readouterr().out)
        assert sum(o["products"] for o in out["orders"]) == (len(grd) - len(bs)) + (len(slc) - len(c6))
        assert main(["order-status", "--aoi", str(path), "--db-url", db_url]) == 0
        status = json.loads(capsys.readouterr().out)
        assert {s["status"] for s in status} == {"queued"} and {s["processor"] for s in status} == {"card_bs", "coh"}
        # the URI form of the connection works too
        monkeypatch.setenv("AIRFLOW_CONN_CBM_ORDER", f"http://agency:s3cret%21@127.0.0.1:{srv.httpd.server_port}/http"
                           f"?token_url={srv.token_url}")
        assert main(["order-status", "--aoi", str(path), "--db-url", db_url]) == 0


def test_client_from_an_airflow_style_connection():
    cfg = AoiConfig.model_validate({"name": "t", "start_date": "2024-01-01", "ordering": {"enabled": True}})
    c = ordering.client_from_connection(cfg, SimpleNamespace(host="finder.creodias.eu", schema=None, port=None,
                                                             login="u", password="p", extra_dejson={}))
    assert c.url == "https://finder.creodias.eu/api/order"
    assert c.token_url == "https://auth.creodias.eu/auth/realms/DIAS/protocol/openid-connect/token"
    c = ordering.client_from_connection(cfg, SimpleNamespace(host=None, login="u", password="p"))
    assert c.url == cfg.ordering.url
    with pytest.raises(ConfigError, match="login and a password"):
        ordering.client_from_connection(cfg, SimpleNamespace(host=None, login="u", password=None))
