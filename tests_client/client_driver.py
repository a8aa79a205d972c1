"""Runs every API-calling function of the JRC's ``cbm`` client (0.0.18, unchanged) against our API.

Run by tests_client/test_client.py with the client venv's Python (``cbm==0.0.18``,
``pandas<2``, ``numpy<2``; see that file), in an empty working directory (the client
writes ``config/`` and ``temp/`` there), with ``MPLBACKEND=Agg``::

    python client_driver.py <params.json> <results.json>

``params.json``: ``url``, ``user``, ``password``, ``aoi``, ``year``, ``pid``, ``peers``,
``lon``, ``lat``, ``polygon``, ``window`` ([start, end]), ``later`` ([start, end]),
``figures`` (directory for the plots). ``results.json``: one record per call, in order:
``name``, ``ok``, ``error`` (type, message, client file:line) and ``result`` (what the
test asserts on: parsed answers, files the client wrote, the figure file).

Every ``requests`` call to a host other than 127.0.0.1 raises (the client's PyPI version
check at import included), so the run proves the client talks only to the API under test.
"""

import glob
import json
import os
import sys
import traceback
from urllib.parse import urlparse

import requests

_get = requests.get
OUTSIDE: list[str] = []


def _local_only(url, *args, **kwargs):
    host = urlparse(url).hostname
    if host not in ("127.0.0.1", "localhost"):
        OUTSIDE.append(url)
        raise requests.ConnectionError(f"test: no request outside 127.0.0.1 ({host})")
    return _get(url, *args, **kwargs)


requests.get = _local_only

import matplotlib  # noqa: E402

matplotlib.use("Agg")
import cbm  # noqa: E402
from cbm.datas import api  # noqa: E402

RESULTS: list[dict] = []


def summary(value, figures, name):
    """What the test needs of a return value (figures are saved as PNG)."""
    if hasattr(value, "savefig"):
        path = os.path.join(figures, name.replace(".", "_").replace("(", "_").replace(")", "").replace(",", "_")
                            .replace(" ", "") + ".png")
        value.savefig(path, dpi=60)
        return {"figure": path, "axes": len(value.axes)}
    if isinstance(value, bytes):
        try:
            return {"json": json.loads(value.decode())}
        except ValueError:
            return {"bytes": len(value)}
    if isinstance(value, requests.Response):
        return {"status": value.status_code, "content_type": value.headers.get("content-type"),
                "imgs": value.text.count("<img"), "text": value.text[:200]}
    if isinstance(value, dict):
        return {"dict": {k: (v if k != "geom" else [len(g) for g in v]) for k, v in value.items()}}
    return {"repr": repr(value)[:300]}


def run(name, fn, *args, figures=".", **kwargs):
    try:
        out = fn(*args, **kwargs)
        RESULTS.append({"name": name, "ok": True, "result": summary(out, figures, name)})
    except Exception as exc:  # noqa: BLE001 - every failure is a result
        tb = traceback.extract_tb(exc.__traceback__)[-1]
        RESULTS.append({"name": name, "ok": False, "error": f"{type(exc).__name__}: {str(exc)[:300]} "
                                                              f"@ {os.path.basename(tb.filename)}:{tb.lineno}"})


def files(pattern):
    return sorted(os.path.relpath(p) for p in glob.glob(pattern, recursive=True))


def main() -> int:
    with open(sys.argv[1]) as f:
        p = json.load(f)
    fig = p["figures"]
    os.makedirs(fig, exist_ok=True)
    cbm.set_api_account(p["url"], p["user"], p["password"])
    a, y, pid, lon, lat = p["aoi"], str(p["year"]), p["pid"], p["lon"], p["lat"]
    w0, w1 = p["window"]
    g, s = cbm.get, cbm.show
    run("datas.api.get_options", api.get_options)
    run("get.parcel_info.by_pid", g.parcel_info.by_pid, a, y, pid)
    run("get.parcel_info.by_location", g.parcel_info.by_location, a, y, lon, lat)
    run("get.parcel_info.by_polygon", g.parcel_info.by_polygon, a, y, p["polygon"])
    run("datas.api.parcel_by_id(wgs84)", api.parcel_by_id, a, y, pid, None, True, True)
    run("get.parcels_list.peers", g.parcels_list.peers, a, y, pid)
    for tstype, band in (("s2", ""), ("s2", "B04"), ("bs", ""), ("c6", ""), ("scl", "")):
        run(f"get.time_series.by_pid({tstype}{',' + band if band else ''})", g.time_series.by_pid, a, y, pid,
            tstype, None, band)
    run("get.time_series.weather", g.time_series.weather, a, y, pid)
    run("get.background.by_pid", g.background.by_pid, a, y, pid, 256, 1024, ["osm"])
    run("get.background.by_location", g.background.by_location, a, y, lon, lat, 256, 512, ["google"])
    run("get.chip_images.by_location", g.chip_images.by_location, lon, lat, w0, w1, "B04", 400)
    run("get.chip_images.by_pid", g.chip_images.by_pid, a, y, pid, w0, w1, "B08", 400)
    run("datas.api.cbl", api.cbl, lon, lat, w0, w1, ["B08", "B04", "B03"], "5_95", None)
    run("datas.api.cbl(lut=None)", api.cbl, lon, lat, w0, w1, ["B08", "B04", "B03"])
    show_calls(s, p, fig)
    RESULTS.append({"name": "files", "ok": True, "result": {
        "chips_pid": files(f"temp/{a}/{y}/{pid}/chip_images/*"), "backgrounds": files(f"temp/{a}/{y}/**/*.tif"),
        "csv": files(f"temp/{a}/{y}/{pid}/*.csv"), "outside": OUTSIDE}})
    with open(sys.argv[2], "w") as f:
        json.dump(RESULTS, f, indent=1)
    return 0


def show_calls(s, p, fig):
    """The ``show.*`` plots (each returns its matplotlib Figure with ``view=False``)."""
    a, y, pid, lon, lat = p["aoi"], str(p["year"]), p["pid"], p["lon"], p["lat"]
    w0, w1 = p["window"]
    run("show.parcel_info.by_pid", s.parcel_info.by_pid, a, y, pid, view=False, figures=fig)
    run("show.time_series.ndvi", s.time_series.ndvi, a, y, pid, view=False, figures=fig)
    run("show.time_series.ndvi(peers)", s.time_series.ndvi, a, y, [pid, *p["peers"]], view=False, figures=fig)
    run("show.time_series.s2", s.time_series.s2, a, y, pid, view=False, figures=fig)
    run("show.time_series.s1(bs)", s.time_series.s1, a, y, pid, "bs", view=False, figures=fig)
    run("show.time_series.s1(c6)", s.time_series.s1, a, y, pid, "c6", view=False, figures=fig)
    run("show.time_series.weather", s.time_series.weather, a, y, pid, view=False, figures=fig)
    run("show.background.by_pid", s.background.by_pid, a, y, pid, 256, 1024, ["osm", "google"], view=False,
        figures=fig)
    run("show.background.by_location", s.background.by_location, a, y, lon, lat, 256, 512, ["google"],
        view=False, figures=fig)
    for imgtype in ("B04", "ndvi", "true_color"):
        run(f"show.chip_images.by_pid({imgtype})", s.chip_images.by_pid, a, y, pid, w0, w1, imgtype,
            view=False, figures=fig)
    run("show.chip_images.by_pid(B04,later)", s.chip_images.by_pid, a, y, pid, *p["later"], "B04", view=False,
        figures=fig)
    run("show.chip_images.by_location(ndvi)", s.chip_images.by_location, lon, lat, w0, w1, "ndvi", view=False,
        figures=fig)
    run("show.chip_images.grid(B08)", s.chip_images.grid, a, y, p["grid_pid"], w0, w1, "B08", view=False,
        figures=fig)


if __name__ == "__main__":
    sys.exit(main())
