"""A resto-like OpenSearch server on 127.0.0.1 for harvest tests.

Serves ``/resto/api/collections/{Sentinel1|Sentinel2}/search.{json|atom}`` over a list of
SYNTHETIC catalogue records (real naming scheme, invented scenes) with the behaviour that
matters to a harvester:

* ``maxRecords`` is clamped to ``page_max`` (as resto clamps it) and ``itemsPerPage`` says so;
* a query can only be paged up to ``cap`` records: a page starting at or beyond the cap
  answers HTTP 400 (CDSE's offset limit) while ``totalResults`` reports the full count;
* ``fail_once`` answers 503 once for the given page number (exercises the retry);
* filters on ``startDate``/``completionDate`` (inclusive), ``productType`` and ``geometry``;
* ``garbage_page`` answers that page with a body that is not a resto document (``text``)
  or a JSON document that is not a FeatureCollection (``json``);
* ``records`` may be changed between harvests (late arrivals, holes).

Keys starting with ``_`` are server-side only: ``_when`` (filter/sort time, for records
whose ``startDate`` is deliberately broken), ``_ptype`` (productType to filter on),
``_geom`` (geometry to filter on), ``_pos`` (raw Atom posList text).
"""

from __future__ import annotations

import datetime as dt
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlencode, urlparse
from xml.sax.saxutils import escape

import shapely


def _t(s: str) -> dt.datetime:
    return dt.datetime.fromisoformat(s.replace("Z", "+00:00")).replace(tzinfo=None)


class RestoServer:
    def __init__(self, records: list[dict], *, page_max: int = 10, cap: int = 25,
                 exact: bool = True, fail_once: int | None = None,
                 garbage_page: tuple[int, str] | None = None):
        self.records = records
        self.page_max, self.cap, self.exact = page_max, cap, exact
        self.fail_once = fail_once
        self.garbage_page = garbage_page
        self.requests: list[str] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):  # keep test output quiet
                pass

            def do_GET(self):  # noqa: N802 - http.server API
                server.requests.append(self.path)
                status, ctype, body = server.answer(self.path)
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_port}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()

    # ------------------------------------------------------------------ search
    def answer(self, path: str) -> tuple[int, str, bytes]:
        u = urlparse(path)
        qs = {k: v[0] for k, v in parse_qs(u.query).items()}
        collection = u.path.split("/")[-2]
        fmt = u.path.rsplit(".", 1)[-1]
        page = int(qs.get("page", 1))
        if self.fail_once is not None and page == self.fail_once:
            self.fail_once = None
            return 503, "text/plain", b"temporarily unavailable"
        if self.garbage_page is not None and page == self.garbage_page[0]:
            if self.garbage_page[1] == "json":
                return 200, "application/json", b'{"ErrorMessage": "upstream index offline"}'
            return 200, "text/html", b"<html><body>Service temporarily unavailable</body></html"
        per = min(int(qs.get("maxRecords", 20)), self.page_max)
        start, end = _t(qs["startDate"]), _t(qs["completionDate"])
        aoi = shapely.from_wkt(qs["geometry"])
        hits = [r for r in self.records
                if r["collection"] == collection and r.get("_ptype", r["productType"]) == qs.get("productType")
                and start <= _t(r.get("_when") or r["startDate"]) <= end
                and shapely.intersects(shapely.geometry.shape(r.get("_geom") or r["geometry"]), aoi)]
        hits.sort(key=lambda r: r.get("_when") or r["startDate"])
        offset = (page - 1) * per
        if offset >= self.cap:
            return 400, "application/json", json.dumps(
                {"ErrorCode": 400, "ErrorMessage": f"offset {offset} beyond limit {self.cap}"}).encode()
        chunk = hits[offset: min(offset + per, self.cap)]
        more = offset + per < min(len(hits), self.cap)
        next_q = dict(qs, page=str(page + 1))
        next_href = f"{self.url}{u.path}?{urlencode(next_q)}" if more else None
        if fmt == "atom":
            return 200, "application/atom+xml", self._atom(chunk, len(hits), per, next_href)
        props = {"totalResults": len(hits) if self.exact else None, "exactCount": self.exact,
                 "startIndex": offset + 1, "itemsPerPage": per,
                 "links": [{"rel": "self", "href": self.url + path}]
                 + ([{"rel": "next", "href": next_href}] if next_href else [])}
        feats = [{"type": "Feature", "id": r["id"], "geometry": r["geometry"],
                  "properties": {k: v for k, v in r.items() if k not in ("geometry", "id") and k[0] != "_"}}
                 for r in chunk]
        return 200, "application/json", json.dumps(
            {"type": "FeatureCollection", "properties": props, "features": feats}).encode()

    def _atom(self, chunk, total, per, next_href) -> bytes:
        entries = []
        for r in chunk:
            if "_pos" in r:
                pos = r["_pos"]
            else:
                ring = r["geometry"]["coordinates"][0]
                pos = " ".join(f"{lat} {lon}" for lon, lat in ring)
            begin = (f"<gml:beginPosition>{escape(str(r['startDate']))}</gml:beginPosition>"
                     if r.get("startDate") not in (None, "") else "")
            rel = (f"<relativeOrbitNumber>{escape(str(r['relativeOrbitNumber']))}</relativeOrbitNumber>"
                   if "relativeOrbitNumber" in r else "")
            entries.append(
                f"<entry><id>{r['id']}</id><title>{escape(r['title'])}</title>"
                f"<gml:validTime><gml:TimePeriod>{begin}"
                f"<gml:endPosition>{r['completionDate']}</gml:endPosition></gml:TimePeriod></gml:validTime>"
                f"<georss:where><gml:Polygon><gml:exterior><gml:LinearRing>"
                f"<gml:posList srsDimensions=\"2\">{escape(pos)}</gml:posList>"
                f"</gml:LinearRing></gml:exterior></gml:Polygon></georss:where>"
                f"<productIdentifier>{escape(r['productIdentifier'])}</productIdentifier>"
                f"<productType>{escape(r['productType'])}</productType>"
                f"<cloudCover>{escape(str(r.get('cloudCover', 0)))}</cloudCover>{rel}"
                f"<orbitDirection>{r.get('orbitDirection', '')}</orbitDirection></entry>")
        link = f'<link rel="next" type="application/atom+xml" href="{escape(next_href)}"/>' if next_href else ""
        return (
            '<?xml version="1.0" encoding="UTF-8"?>'
            '<feed xmlns="http://www.w3.org/2005/Atom" xmlns:os="http://a9.com/-/spec/opensearch/1.1/" '
            'xmlns:georss="http://www.georss.org/georss" xmlns:gml="http://www.opengis.net/gml">'
            f"<title>resto</title>{link}<os:totalResults>{total}</os:totalResults>"
            f"<os:itemsPerPage>{per}</os:itemsPerPage>{''.join(entries)}</feed>").encode()


def synthetic_records(n_s2: int = 57, n_bs: int = 12) -> list[dict]:
    """SYNTHETIC catalogue records over Flanders (real naming scheme, invented scenes)."""
    recs = []
    base = dt.datetime(2024, 1, 1, 10, 56, 21)
    square = {"type": "Polygon", "coordinates": [[[2.9, 50.4], [4.5, 50.4], [4.5, 51.4], [2.9, 51.4], [2.9, 50.4]]]}
    for i in range(n_s2):
        t = base + dt.timedelta(hours=29 * i)
        tile = ("31UDS", "31UES")[i % 2]
        ref = f"S2{'AB'[i % 2]}_MSIL2A_{t:%Y%m%dT%H%M%S}_N0510_R051_T{tile}_{t:%Y%m%dT}140000"
        recs.append({"id": f"s2-{i:04d}", "collection": "Sentinel2", "productType": "S2MSI2A",
                     "title": ref + ".SAFE", "startDate": t.isoformat() + ".024Z",
                     "completionDate": t.isoformat() + ".024Z", "geometry": square,
                     "productIdentifier": f"/eodata/Sentinel-2/MSI/L2A/{t:%Y/%m/%d}/{ref}.SAFE",
                     "cloudCover": float(i % 100), "orbitDirection": "descending"})
    for i in range(n_bs):
        t = base + dt.timedelta(days=6 * i, hours=6, minutes=45)
        absorb = 52000 + 90 * i
        ref = (f"S1A_IW_GRDH_1SDV_{t:%Y%m%dT%H%M%S}_{t + dt.timedelta(seconds=25):%Y%m%dT%H%M%S}_"
               f"{absorb:06d}_06{i:04X}_ABCD_CARD_BS")
        recs.append({"id": f"bs-{i:04d}", "collection": "Sentinel1", "productType": "CARD-BS",
                     "title": ref, "startDate": t.isoformat() + ".000Z",
                     "completionDate": t.isoformat() + ".000Z", "geometry": square,
                     "productIdentifier": f"/eodata/Sentinel-1/SAR/CARD-BS/{t:%Y/%m/%d}/{ref}",
                     "orbitDirection": "ASCENDING", "relativeOrbitNumber": (absorb - 73) % 175 + 1})
    return recs


# ----------------------------------------------------------------------------- revisit catalogue
# SYNTHETIC catalogue with the real revisit pattern: each satellite repeats its track every
# 10 days (S2) / 12 days (S1); S2A/S2B and S1A/S1B are half a cycle apart. Names follow the
# naming conventions; times, orbits and datatake ids are invented but consistent (the
# relative orbit derived from the absolute orbit in an S1 name is the track's).
FLANDERS_SQUARE = {"type": "Polygon", "coordinates": [[[2.9, 50.4], [4.5, 50.4], [4.5, 51.4],
                                                        [2.9, 51.4], [2.9, 50.4]]]}
S2_TRACKS = (  # satellite, relative orbit, tile, first pass
    ("A", 51, "31UDS", dt.datetime(2024, 1, 2, 10, 56, 21)),
    ("B", 51, "31UDS", dt.datetime(2024, 1, 7, 10, 56, 19)),
    ("A", 51, "31UES", dt.datetime(2024, 1, 2, 10, 56, 21)),
    ("B", 51, "31UES", dt.datetime(2024, 1, 7, 10, 56, 19)),
    ("A", 8, "31UES", dt.datetime(2024, 1, 4, 10, 46, 21)),
    ("B", 8, "31UES", dt.datetime(2024, 1, 9, 10, 46, 19)),
)
# satellite, relative orbit, first pass, its absolute orbit (S1A: (abs-73)%175+1, S1B: (abs-27)%175+1)
S1_TRACKS = (("A", 88, dt.datetime(2024, 1, 1, 17, 41, 21), 52135),
             ("B", 88, dt.datetime(2024, 1, 7, 17, 41, 22), 29864))


def s2_revisit_records(start: dt.datetime, end: dt.datetime, tracks=S2_TRACKS) -> list[dict]:
    """SYNTHETIC S2 L2A records of the tracks between start and end (one per pass and tile)."""
    out = []
    for sat, orbit, tile, first in tracks:
        t = first
        while t <= end:
            if t >= start:
                ref = f"S2{sat}_MSIL2A_{t:%Y%m%dT%H%M%S}_N0510_R{orbit:03d}_T{tile}_{t:%Y%m%d}T140000"
                out.append({"id": f"s2-{ref}", "collection": "Sentinel2", "productType": "S2MSI2A",
                            "title": ref + ".SAFE", "startDate": t.isoformat() + ".024Z",
                            "completionDate": t.isoformat() + ".024Z", "geometry": FLANDERS_SQUARE,
                            "productIdentifier": f"/eodata/Sentinel-2/MSI/L2A/{t:%Y/%m/%d}/{ref}.SAFE",
                            "cloudCover": 40.0, "orbitDirection": "descending",
                            "relativeOrbitNumber": orbit})
            t += dt.timedelta(days=10)
    return sorted(out, key=lambda r: r["startDate"])


S1_KIND = {  # product type -> (name product class, suffix, resto productType, slice offset s)
    "CARD-BS": ("GRDH", "_CARD_BS", "CARD-BS", 0),
    "GRD": ("GRDH", "", "GRD", 0),
    "SLC": ("SLC_", "", "SLC", 2),
    "CARD-COH6": ("SLC_", "_CARD_COH6", "CARD-COH6", 2),
}


def s1_revisit_records(start: dt.datetime, end: dt.datetime, kind: str = "CARD-BS",
                       tracks=S1_TRACKS, slices: int = 2) -> list[dict]:
    """SYNTHETIC S1 records (``slices`` consecutive products per pass) of one kind.

    GRD and CARD-BS (and SLC and CARD-COH6) of one pass share mission, start, stop,
    absolute orbit and datatake id, as the CREODIAS CARD products carry their source's
    name; GRD and SLC slices start 2 s apart.
    """
    cls, suffix, ptype, off = S1_KIND[kind]
    out = []
    for sat, orbit, first, absorb in tracks:
        t, k = first, 0
        while t <= end:
            if t >= start:
                for s in range(slices):
                    t0 = t + dt.timedelta(seconds=off + 25 * s)
                    t1 = t0 + dt.timedelta(seconds=27)
                    take = (0x40000 if sat == "A" else 0x20000) + 16 * k
                    uid = f"{(absorb + 175 * k + s * 7) % 65536:04X}"
                    src = (f"S1{sat}_IW_{cls}_1SDV_{t0:%Y%m%dT%H%M%S}_{t1:%Y%m%dT%H%M%S}_"
                           f"{absorb + 175 * k:06d}_{take:06X}_{uid}")
                    ref = src + suffix
                    folder = {"CARD-BS": "CARD-BS", "CARD-COH6": "CARD-COH6"}.get(kind, kind)
                    out.append({"id": f"{kind}-{ref}", "collection": "Sentinel1", "productType": ptype,
                                "title": ref if suffix else ref + ".SAFE",
                                "startDate": t0.isoformat() + ".000Z", "completionDate": t1.isoformat() + ".000Z",
                                "geometry": FLANDERS_SQUARE, "sensorMode": "IW",
                                "productIdentifier": f"/eodata/Sentinel-1/SAR/{folder}/{t0:%Y/%m/%d}/{ref}",
                                "orbitDirection": "ASCENDING", "relativeOrbitNumber": orbit})
            t += dt.timedelta(days=12)
            k += 1
    return sorted(out, key=lambda r: r["startDate"])
