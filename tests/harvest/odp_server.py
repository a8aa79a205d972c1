"""A local stand-in for the CDSE On-Demand Processing (ODP) API and the CDSE identity service.

BUILT FROM DOCUMENTED SHAPES, NOT RECORDINGS: no real ProductionOrder exchange has been
recorded anywhere we could find (``../shared/data/catalogue-responses/cdse-odp/SOURCE.md``).
Shapes follow the CDSE documentation ("On-Demand Production API", "Token", "Quotas") as
summarised in ``APIS.md`` section 5:

* token: ``POST /auth/realms/CDSE/protocol/openid-connect/token`` (form: ``client_id``
  cdse-public, ``grant_type`` password with ``username``/``password``, or refresh_token)
  -> ``access_token``, ``expires_in`` 600, ``refresh_token``;
* ``GET /odata/v1/Workflows`` -> ``{"value": [{Id, Name, DisplayName, Description,
  InputProductType, OutputProductType, WorkflowVersion}]}``. ``card_bs`` is the doc's
  example; the CARD-COH6 workflow name here (``card_coh6``) is an ASSUMPTION (UNCONFIRMED);
* ``POST /odata/v1/ProductionOrder/OData.CSC.Order`` (Bearer) with ``WorkflowName``,
  ``InputProductReference.Reference``, ``Priority``, ``Name`` -> HTTP 201 (UNCONFIRMED:
  200 or 201) ``{"@odata.context": "$metadata#OData.CSC.Order", "value": {Id, Status
  "queued", StatusMessage, SubmissionDate, Name, EstimatedDate, InputProductReference,
  WorkflowOptions, WorkflowName, WorkflowId, Priority}}``;
* ``GET /odata/v1/ProductionOrders(<id>)`` -> ``{"@odata.context":
  "$metadata#ProductionOrder/$entity", "value": [ {...} ]}`` (a list under an entity
  context, as in the doc's list example; the single-order shape is UNCONFIRMED);
* ``GET /odata/v1/ProductionOrder(<id>)/Product`` -> the output product (``Name``) once
  completed, else 404 (shape UNCONFIRMED).

The quotas of the doc are enforced: 2 orders queued or in progress per user, 25 orders per
month; the refusal's status and body (403 ``{"detail": "..."}``) are ASSUMED.

Test controls: ``refuse_next`` (status, detail), ``fail_next`` (500 once), :meth:`process`
moves an order to ``in_progress``/``completed``/``failed``/``cancelled`` (``status_words``
picks the spellings of the doc's prose: "in progress", "complete") and calls
``on_done(order, output_name)`` when completed.
"""

from __future__ import annotations

import datetime as dt
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs

TOKEN_PATH = "/auth/realms/CDSE/protocol/openid-connect/token"
API = "/odata/v1"
WORKFLOWS = [
    {"Id": "1", "Name": "card_bs", "DisplayName": "CARD-BS", "Description": "Sentinel-1 CARD backscatter",
     "InputProductType": "IW_GRDH_1S", "InputProductTypes": ["IW_GRDH_1S"], "OutputProductType": "CARD-BS",
     "WorkflowVersion": "3.6.2"},
    {"Id": "2", "Name": "card_coh6", "DisplayName": "CARD-COH6", "Description": "ASSUMED name",
     "InputProductType": "IW_SLC__1S", "InputProductTypes": ["IW_SLC__1S"], "OutputProductType": "CARD-COH6",
     "WorkflowVersion": "3.1.0"},
    {"Id": "3", "Name": "card_coh12_public", "DisplayName": "CARD-COH12", "Description": "doc example",
     "InputProductType": "IW_SLC__1S", "InputProductTypes": ["IW_SLC__1S"], "OutputProductType": "CARD-COH12",
     "WorkflowVersion": "3.1.0"},
]
SUFFIX = {"card_bs": "_CARD_BS", "card_coh6": "_CARD_COH6", "card_coh12_public": "_CARD_COH12"}


class OdpServer:
    def __init__(self, username: str = "agency@example.eu", password: str = "s3cret!", *, monthly: int = 25,
                 concurrent: int = 2, prose_statuses: bool = False):
        self.username, self.password = username, password
        self.monthly, self.concurrent = monthly, concurrent
        self.prose = prose_statuses
        self.tokens: set[str] = set()
        self.refresh: set[str] = set()
        self.grants: list[str] = []
        self.orders: dict[str, dict] = {}
        self.next_id = 9999999          # the doc's example Id
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

            def do_POST(self):  # noqa: N802 - http.server API
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with server.lock:
                    server.requests.append(("POST", self.path))
                    self._send(*server.post(self.path, self.headers, body))

            def do_GET(self):  # noqa: N802
                with server.lock:
                    server.requests.append(("GET", self.path))
                    self._send(*server.get(self.path, self.headers))

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_port}"
        self.api = self.url + API
        self.token_url = self.url + TOKEN_PATH
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()

    # ----------------------------------------------------------------- helpers
    def order_posts(self) -> int:
        return sum(1 for m, p in self.requests if m == "POST" and p.endswith("OData.CSC.Order"))

    def _authorised(self, headers) -> bool:
        auth = headers.get("Authorization") or ""
        return auth.startswith("Bearer ") and auth[7:] in self.tokens

    def _token(self, form: dict[str, str]) -> tuple[int, dict]:
        grant = form.get("grant_type", "")
        self.grants.append(grant)
        if form.get("client_id") != "cdse-public":
            return 401, {"error": "unauthorized_client", "error_description": "Invalid client"}
        if grant == "password" and (form.get("username"), form.get("password")) != (self.username, self.password):
            return 401, {"error": "invalid_grant", "error_description": "Invalid user credentials"}
        if grant == "refresh_token" and form.get("refresh_token") not in self.refresh:
            return 400, {"error": "invalid_grant", "error_description": "Token is not active"}
        n = len(self.grants)
        tok, ref = f"tok-{n}", f"ref-{n}"
        self.tokens.add(tok)
        self.refresh.add(ref)
        return 200, {"access_token": tok, "expires_in": 600, "refresh_expires_in": 3600, "refresh_token": ref,
                     "token_type": "Bearer", "not-before-policy": 0, "scope": "AUDIENCE_PUBLIC openid email profile"}

    def _status_word(self, status: str) -> str:
        if self.prose:
            return {"in_progress": "in progress", "completed": "complete"}.get(status, status)
        return status

    def _running(self) -> int:
        return sum(1 for o in self.orders.values() if o["Status"] in ("queued", "in_progress", "in progress"))

    # ----------------------------------------------------------------- routes
    def post(self, path: str, headers, body: bytes) -> tuple[int, dict]:
        if path == TOKEN_PATH:
            return self._token({k: v[0] for k, v in parse_qs(body.decode()).items()})
        if not self._authorised(headers):
            return 401, {"detail": "Not authenticated"}
        if path != API + "/ProductionOrder/OData.CSC.Order":
            return 404, {"detail": "Not Found"}
        if self.fail_next:
            self.fail_next = False
            return 500, {"detail": "Internal Server Error"}
        if self.refuse_next:
            status, detail = self.refuse_next
            self.refuse_next = None
            return status, {"detail": detail}
        req = json.loads(body)
        wf = req.get("WorkflowName")
        if wf not in SUFFIX:
            return 400, {"detail": f"Workflow {wf} not found"}
        if self._running() >= self.concurrent:
            return 403, {"detail": f"Quota exceeded: at most {self.concurrent} orders in progress"}
        if len(self.orders) >= self.monthly:
            return 403, {"detail": f"Quota exceeded: at most {self.monthly} orders per month"}
        oid = str(self.next_id)
        self.next_id += 1
        now = dt.datetime(2026, 12, 4, 12, 0, 0)
        self.orders[oid] = {
            "Id": oid, "Status": "queued", "StatusMessage": "queued", "SubmissionDate": f"{now:%Y-%m-%dT%H:%M:%S}.000Z",
            "Name": req.get("Name"), "EstimatedDate": f"{now + dt.timedelta(hours=1):%Y-%m-%dT%H:%M:%S}.000Z",
            "InputProductReference": {"Reference": req["InputProductReference"]["Reference"], "ContentDate": None},
            "WorkflowOptions": [], "WorkflowName": wf,
            "WorkflowId": next(w["Id"] for w in WORKFLOWS if w["Name"] == wf),
            "Priority": req.get("Priority", 1)}
        return 201, {"@odata.context": "$metadata#OData.CSC.Order", "value": _public(self.orders[oid])}

    def get(self, path: str, headers) -> tuple[int, dict]:
        if not self._authorised(headers):
            return 401, {"detail": "Not authenticated"}
        if path == API + "/Workflows":
            return 200, {"@odata.context": "$metadata#Workflows", "value": WORKFLOWS}
        if path.startswith(API + "/ProductionOrders(") and path.endswith(")"):
            o = self.orders.get(path[len(API + "/ProductionOrders("):-1])
            if o is None:
                return 404, {"detail": "Order not found"}
            return 200, {"@odata.context": "$metadata#ProductionOrder/$entity", "value": [_public(o)]}
        if path.startswith(API + "/ProductionOrder(") and path.endswith(")/Product"):
            o = self.orders.get(path[len(API + "/ProductionOrder("):-len(")/Product")])
            if o is None or not o.get("_output"):
                return 404, {"detail": "No output product"}
            return 200, {"@odata.context": "$metadata#Products/$entity", "value": {"Name": o["_output"]}}
        return 404, {"detail": "Not Found"}

    def process(self, oid: str, status: str, message: str | None = None) -> None:
        """Move an order to ``status`` (in_progress, completed, failed, cancelled)."""
        with self.lock:
            o = self.orders[oid]
            o["Status"] = self._status_word(status)
            o["StatusMessage"] = message or {"completed": "requested output product is available"}.get(status, status)
            if status == "completed":
                ref = o["InputProductReference"]["Reference"].removesuffix(".SAFE")
                o["_output"] = ref + SUFFIX[o["WorkflowName"]]
                if self.on_done:
                    self.on_done(o, o["_output"])


def _public(o: dict) -> dict:
    return {k: v for k, v in o.items() if not k.startswith("_")}
