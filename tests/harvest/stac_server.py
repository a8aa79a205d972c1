"""A local replay of STAC API item searches (Earth Search, Planetary Computer, CDSE STAC v1)
for harvest tests.

It answers ``POST .../search`` with REAL recorded pages, in order: a request without a paging
token (``next`` for Earth Search, ``token`` for Planetary Computer / pgstac) gets the first
page; a request whose token equals the token in the ``next`` link of recorded page *k* gets
page *k+1*. The hrefs of ``next`` links are rewritten to this server. A token that was not
recorded is answered either with HTTP 404 (``unrecorded="error"``) or with an empty
FeatureCollection (``unrecorded="empty"``: the shape of Earth Search's real last page, used
where the real next page is not recorded; tests say so). Every request body is kept.

Failure injection (``faults``: request number -> kind, 1-based): ``429`` (the CDSE WAF body
from the forum, a DOCUMENTED shape, with ``Retry-After: 1``), ``503``, ``truncated`` (the
page cut in the middle of its JSON). ``loop=True``: every page's ``next`` link repeats the
request that produced it (a server that pages forever).
"""

from __future__ import annotations

import copy
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

WAF_429 = {"error": "WAF", "message": "Rate limit exceeded"}
EMPTY_PAGE = {"type": "FeatureCollection", "stac_version": "1.0.0", "stac_extensions": [],
              "context": {"limit": 10, "matched": 0, "returned": 0}, "numberMatched": 0,
              "numberReturned": 0, "features": [], "links": []}


def _token(body: dict) -> str | None:
    for k in ("next", "token"):
        if isinstance(body.get(k), str):
            return body[k]
    return None


class StacServer:
    def __init__(self, pages: list[dict], *, prefix: str = "/v1", unrecorded: str = "error",
                 faults: dict[int, str] | None = None, loop: bool = False):
        self.pages = pages
        self.loop = loop
        self.prefix = prefix
        self.unrecorded = unrecorded
        self.faults = dict(faults or {})
        self.bodies: list[dict] = []
        self.answers: list[int] = []
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_POST(self):  # noqa: N802 - http.server API
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with server.lock:
                    try:
                        body = json.loads(raw or b"{}")
                    except ValueError:
                        body = {"_unreadable": raw.decode(errors="replace")}
                    server.bodies.append(body)
                    status, data, headers = server.answer(self.path, body, len(server.bodies))
                    server.answers.append(status)
                self.send_response(status)
                for k, v in {"Content-Type": "application/geo+json", **headers}.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_port}{prefix}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()

    def _page(self, body: dict) -> dict | None:
        tok = _token(body)
        if tok is None:
            return self.pages[0]
        for k, page in enumerate(self.pages[:-1]):
            nxt = next((lk for lk in page.get("links", []) if lk.get("rel") == "next"), None)
            if nxt and _token(nxt.get("body") or {}) == tok:
                return self.pages[k + 1]
        return None

    def _rewrite(self, page: dict) -> dict:
        page = copy.deepcopy(page)
        for lk in page.get("links", []):
            if lk.get("rel") in ("next", "previous"):
                lk["href"] = self.url + "/search"
        return page

    def answer(self, path: str, body: dict, n: int) -> tuple[int, bytes, dict[str, str]]:
        fault = self.faults.pop(n, None)
        if fault == "429":
            return 429, json.dumps(WAF_429).encode(), {"Retry-After": "1"}
        if fault == "503":
            return 503, b"<html>Service Unavailable</html>", {"Content-Type": "text/html"}
        if not path.startswith(self.prefix + "/search"):
            return 404, b'{"code": "NotFound"}', {}
        page = self._page(body)
        if page is None:
            if self.unrecorded == "empty":
                return 200, json.dumps(EMPTY_PAGE).encode(), {}
            return 404, json.dumps({"code": "NotFound", "description": "page not recorded"}).encode(), {}
        if self.loop:
            page = copy.deepcopy(page)
            for lk in page.get("links", []):
                if lk.get("rel") == "next":
                    lk["body"] = dict(body)
        data = json.dumps(self._rewrite(page)).encode()
        if fault == "truncated":
            data = data[: len(data) // 2]
        return 200, data, {}
