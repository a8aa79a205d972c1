"""A local replay of the CDSE OData catalogue for harvest tests.

Two modes:

* ``recorded``: the five REAL pages of ``cdse-odata/cdsetool_s1_odata_page_{1..5}.json``
  (CDSETool's recording of ``catalogue.dataspace.copernicus.eu``) answered byte for byte,
  except that the host of each ``@odata.nextLink`` is this server: the first request (no
  ``$skip``) gets page 1, a request with ``$skip=N`` page N/10+1 (the recorded nextLinks);
* ``pool``: a list of REAL product records (from the recorded pages; tests add the DERIVED
  ones and say so) filtered like the service filters them: ``Collection/Name``, the
  ``productType`` attribute, ``ContentDate/Start`` ge/gt/le/lt, and
  ``OData.CSC.Intersects`` for records with a ``GeoFootprint`` (``filter_type=False``
  drops the productType test: the recorded cdsetool query had none); sorted by
  ``ContentDate/Start``; ``$top`` (at most 1000), ``$skip``; ``@odata.count`` when
  ``$count=true``; a nextLink built as CDSE builds it (the query with ``$skip`` appended,
  ``$count`` dropped) and left out when the next ``$skip`` would pass ``max_skip``; a
  ``$skip`` above ``max_skip`` answers HTTP 422 with the body of CDSE's release note
  (DOCUMENTED shape, no recording exists).

Failure injection (``faults``: request number -> kind, 1-based over all requests):
``429`` (the CDSE WAF body from the forum, a DOCUMENTED shape, with ``Retry-After: 1``),
``503``, ``truncated`` (the page cut in the middle of its JSON), ``context:<form>`` (the
page with another ``@odata.context``, one of the three real forms).
"""

from __future__ import annotations

import datetime as dt
import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlsplit

import shapely

CDSE = "https://catalogue.dataspace.copernicus.eu"
WAF_429 = {"error": "WAF", "message": "Rate limit exceeded"}
# CDSE release note 2024-11-12 (APIS.md section 1): pydantic-style body of a $skip past 10,000.
SKIP_422 = {"detail": [{"type": "less_than_equal", "loc": ["query", "$skip"],
                        "msg": "Input should be less than or equal to 10000", "input": "{skip}",
                        "ctx": {"le": 10000}}]}


def _t(s: str) -> dt.datetime:
    s = s.replace("Z", "")
    head, _, frac = s.partition(".")
    return dt.datetime.fromisoformat(head + ("." + frac[:6] if frac else ""))


def recorded_pages(folder: Path) -> list[dict]:
    return [json.loads((folder / f"cdsetool_s1_odata_page_{i}.json").read_text()) for i in range(1, 6)]


class ODataServer:
    def __init__(self, *, pages: list[dict] | None = None, pool: list[dict] | None = None,
                 max_skip: int = 10000, omit_next_at_cap: bool = True, faults: dict[int, str] | None = None,
                 filter_type: bool = True, rewrite: bool = True):
        self.pages, self.pool = pages, pool
        self.filter_type, self.rewrite = filter_type, rewrite
        self.max_skip, self.omit_next_at_cap = max_skip, omit_next_at_cap
        self.faults = dict(faults or {})
        self.requests: list[str] = []
        self.answers: list[int] = []
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_GET(self):  # noqa: N802 - http.server API
                with server.lock:
                    server.requests.append(self.path)
                    status, body, headers = server.answer(self.path, len(server.requests))
                    server.answers.append(status)
                self.send_response(status)
                for k, v in {"Content-Type": "application/json", **headers}.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.httpd.server_port}"
        self.url = self.base + "/odata/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()

    # ----------------------------------------------------------------- answers
    def answer(self, path: str, n: int) -> tuple[int, bytes, dict[str, str]]:
        fault = self.faults.pop(n, None)
        if fault == "429":
            return 429, json.dumps(WAF_429).encode(), {"Retry-After": "1"}
        if fault == "503":
            return 503, b"<html>Service Temporarily Unavailable</html>", {"Content-Type": "text/html"}
        u = urlsplit(path)
        if not u.path.endswith("/Products"):
            return 404, b'{"detail": "Not Found"}', {}
        qs = {k: v[0] for k, v in parse_qs(u.query, keep_blank_values=True).items()}
        skip = int(qs.get("$skip", 0))
        if skip > self.max_skip:
            return 422, json.dumps(SKIP_422).replace("{skip}", str(skip)).encode(), {}
        doc = self._recorded(skip) if self.pages is not None else self._pool(u.path, qs, skip)
        if fault and fault.startswith("context:"):
            doc = {**doc, "@odata.context": fault.split(":", 1)[1]}
        body = json.dumps(doc).encode()
        if fault == "truncated":
            body = body[: len(body) // 2]
        return 200, body, {}

    def _recorded(self, skip: int) -> dict:
        assert self.pages is not None
        doc = dict(self.pages[min(skip // 10, len(self.pages) - 1)])
        if "@odata.nextLink" in doc and self.rewrite:
            doc["@odata.nextLink"] = doc["@odata.nextLink"].replace(CDSE, self.base)
        return doc

    def _pool(self, path: str, qs: dict[str, str], skip: int) -> dict:
        assert self.pool is not None
        flt = qs.get("$filter", "")
        hits = [p for p in self.pool if _matches(p, flt, self.filter_type)]
        hits.sort(key=lambda p: (p["ContentDate"]["Start"], p["Id"]))
        top = min(int(qs.get("$top", 20)), 1000)
        doc: dict = {"@odata.context": "$metadata#Products(Attributes())"}
        if qs.get("$count") == "true":
            doc["@odata.count"] = len(hits)
        doc["value"] = hits[skip: skip + top]
        nxt = skip + top
        if nxt < len(hits) and (nxt <= self.max_skip or not self.omit_next_at_cap):
            q = {k: v for k, v in qs.items() if k not in ("$skip", "$count")}
            q["$skip"] = str(nxt)
            doc["@odata.nextLink"] = f"{self.base}{path}?{urlencode(q)}"
        return doc


def _matches(p: dict, flt: str, filter_type: bool = True) -> bool:
    attrs = {a["Name"]: a.get("Value") for a in p.get("Attributes") or []}
    m = re.search(r"Collection/Name eq '([^']+)'", flt)
    if m and not p.get("Name", "").startswith({"SENTINEL-1": "S1", "SENTINEL-2": "S2"}.get(m.group(1), "?")):
        return False
    m = re.search(r"att/OData\.CSC\.StringAttribute/Value eq '([^']+)'", flt)
    if m and filter_type and attrs.get("productType") != m.group(1):
        return False
    start = _t(p["ContentDate"]["Start"])
    for op, val in re.findall(r"ContentDate/Start (ge|gt|le|lt) (\S+Z)", flt):
        t = _t(val)
        if not {"ge": start >= t, "gt": start > t, "le": start <= t, "lt": start < t}[op]:
            return False
    m = re.search(r"OData\.CSC\.Intersects\(area=geography'SRID=4326;([^']+)'\)", flt)
    if m and isinstance(p.get("GeoFootprint"), dict):
        if not shapely.intersects(shapely.from_wkt(m.group(1)), shapely.geometry.shape(p["GeoFootprint"])):
            return False
    m = re.search(r"DoubleAttribute/Value le ([\d.]+)", flt)
    return not (m and attrs.get("cloudCover") is not None and attrs["cloudCover"] > float(m.group(1)))
