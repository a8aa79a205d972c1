"""A local stand-in for the CREODIAS processing-order API (finder ``/api/order``) and its
Keycloak token endpoint, for ordering tests.

Request and response shapes follow the public CREODIAS material (see docs/harvest.md,
"S1 CARD ordering"): token by password grant (``client_id``, ``username``, ``password``,
``grant_type``) -> ``access_token``; header ``Keycloak-Token``; ``POST /api/order/`` with
``order_name``, ``priority``, ``processor``, ``identifier_list`` -> the order with ``id``;
``GET /api/order/<id>/summary`` (status and ``*_order_items_count``);
``GET /api/order/<id>/order_items`` (``items`` with ``id``, ``name``, ``status``,
``result.processed_name``; ``total``, ``page``, ``size``). Behaviour not documented
publicly is ASSUMED here the same way as in cbm_ops.harvest.ordering (status names, 4xx bodies with
``detail``, paging parameters).

Test controls: ``refuse_next`` (status, detail) refuses the next order; ``fail_next`` makes
the next order request answer 500; :meth:`process` moves items to done/failed and calls
``on_done(item, processed_name)`` (tests publish the CARD product in their resto server).
"""

from __future__ import annotations

import datetime as dt
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

TOKEN_PATH = "/auth/realms/DIAS/protocol/openid-connect/token"
SUFFIX = {"card_bs": "_CARD_BS", "coh": "_CARD_COH6"}


class OrderServer:
    def __init__(self, username: str = "agency", password: str = "s3cret!", known: set[str] | None = None):
        self.username, self.password = username, password
        self.known = known              # source product names the DIAS has (None = any)
        self.tokens: set[str] = set()
        self.orders: dict[int, dict] = {}
        self.next_id = 1331871          # the order id of the seed's example
        self.next_item = 2491216
        self.refuse_next: tuple[int, str] | None = None
        self.fail_next = False
        self.on_done = None
        self.requests: list[tuple[str, str]] = []
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def _send(self, status: int, body: dict):
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _body(self) -> bytes:
                return self.rfile.read(int(self.headers.get("Content-Length") or 0))

            def do_POST(self):  # noqa: N802 - http.server API
                server.requests.append(("POST", self.path))
                with server.lock:
                    self._send(*server.post(self.path, self.headers, self._body()))

            def do_GET(self):  # noqa: N802
                server.requests.append(("GET", self.path))
                with server.lock:
                    self._send(*server.get(self.path, self.headers))

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_port}"
        self.api = self.url + "/api/order"
        self.token_url = self.url + TOKEN_PATH
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()

    # ------------------------------------------------------------------ endpoints
    def post(self, path: str, headers, body: bytes) -> tuple[int, dict]:
        if path == TOKEN_PATH:
            form = {k: v[0] for k, v in parse_qs(body.decode()).items()}
            if (form.get("grant_type"), form.get("client_id")) != ("password", "CLOUDFERRO_PUBLIC"):
                return 400, {"error": "unauthorized_client"}
            if (form.get("username"), form.get("password")) != (self.username, self.password):
                return 401, {"error": "invalid_grant", "error_description": "Invalid user credentials"}
            tok = f"tok-{len(self.tokens) + 1}"
            self.tokens.add(tok)
            return 200, {"access_token": tok, "expires_in": 600, "token_type": "Bearer"}
        if not self._authorised(headers):
            return 401, {"detail": "Authentication credentials were not provided."}
        if urlparse(path).path != "/api/order/":
            return 404, {"detail": "Not found."}
        if self.fail_next:
            self.fail_next = False
            return 500, {"detail": "Internal server error"}
        if self.refuse_next:
            status, detail = self.refuse_next
            self.refuse_next = None
            return status, {"detail": detail}
        try:
            req = json.loads(body)
        except ValueError:
            return 400, {"detail": "JSON parse error"}
        ids = req.get("identifier_list")
        if req.get("processor") not in SUFFIX:
            return 400, {"detail": f"Unknown processor: {req.get('processor')}"}
        if not isinstance(ids, list) or not ids or not all(isinstance(i, str) for i in ids):
            return 400, {"detail": "identifier_list must be a non-empty list of product names"}
        unknown = [i for i in ids if self.known is not None and i not in self.known]
        if unknown:
            return 400, {"detail": f"Products not found: {', '.join(unknown[:3])}"}
        oid = self.next_id
        self.next_id += 1
        now = dt.datetime.now(dt.UTC).isoformat()
        items = []
        for name in ids:
            items.append({"id": self.next_item, "name": name, "status": "queued", "add_date": now,
                          "mod_date": now, "extra_info": "", "result": {}, "order": {"extra": None}})
            self.next_item += 1
        self.orders[oid] = {"id": oid, "order_name": req.get("order_name"), "processor": req["processor"],
                            "priority": req.get("priority"), "status": "queued", "items": items}
        return 200, {k: v for k, v in self.orders[oid].items() if k != "items"}

    def get(self, path: str, headers) -> tuple[int, dict]:
        if not self._authorised(headers):
            return 401, {"detail": "Authentication credentials were not provided."}
        u = urlparse(path)
        parts = [p for p in u.path.split("/") if p]          # api order <id> summary|order_items
        if len(parts) < 3 or parts[:2] != ["api", "order"] or not parts[2].isdigit():
            return 404, {"detail": "Not found."}
        order = self.orders.get(int(parts[2]))
        if order is None:
            return 404, {"detail": "Not found."}
        what = parts[3] if len(parts) > 3 else ""
        if what == "summary":
            return 200, self.summary(order)
        if what == "order_items":
            qs = {k: v[0] for k, v in parse_qs(u.query).items()}
            page, size = int(qs.get("page", 0)), int(qs.get("size", 10))
            items = order["items"][page * size:(page + 1) * size]
            return 200, {"items": items, "total": len(order["items"]), "page": page, "size": size}
        if what == "":
            return 200, {k: v for k, v in order.items() if k != "items"}
        return 404, {"detail": "Not found."}

    def _authorised(self, headers) -> bool:
        return headers.get("Keycloak-Token") in self.tokens

    @staticmethod
    def summary(order: dict) -> dict:
        n = {s: sum(1 for i in order["items"] if i["status"] == s)
             for s in ("queued", "processing", "downloading", "done", "failed", "cancelled")}
        return {"status": order["status"], "processing_order_items_count": n["processing"],
                "downloading_order_items_count": n["downloading"], "done_order_items_count": n["done"],
                "queued_order_items_count": n["queued"],
                "failed_or_cancelled_order_items_count": n["failed"] + n["cancelled"],
                "last_order_item_change_timestamp": max(i["mod_date"] for i in order["items"])}

    # ------------------------------------------------------------------ test controls
    def process(self, oid: int, done: list[str] = (), failed: list[str] = (), processing: list[str] = ()) -> None:
        """Move items of an order on; done items get their CARD product name."""
        with self.lock:
            order = self.orders[oid]
            now = dt.datetime.now(dt.UTC).isoformat()
            for it in order["items"]:
                if it["name"] in done:
                    pname = it["name"] + SUFFIX[order["processor"]]
                    it.update(status="done", mod_date=now,
                              result={"processed_name": pname, "processed_size": 1234567, "processing_metadata": {}})
                    if self.on_done:
                        self.on_done(it, pname)
                elif it["name"] in failed:
                    it.update(status="failed", mod_date=now, extra_info="SNAP graph failed: no orbit file")
                elif it["name"] in processing:
                    it.update(status="processing", mod_date=now)
            states = {i["status"] for i in order["items"]}
            # order statuses seen in public client code: done, done_with_error, cancelled; else in progress
            order["status"] = ("queued" if states == {"queued"}
                               else "processing" if states & {"queued", "processing", "downloading"}
                               else "done" if states == {"done"} else "done_with_error")

    def order_posts(self) -> int:
        return sum(1 for m, p in self.requests if m == "POST" and p.startswith("/api/order"))
