"""Chip latency on a full-size Sentinel-2 granule (a section of ``make bench``, scripts/bench.py).

The demo sample's band files are 64 x 64 pixels, which says nothing about cutting a chip out
of a real 10980 x 10980 JPEG2000 band. This measures :func:`cbm_ops.analyst.chips.cut_scene`
(the chip routes' read through the scene store) on the bench's full-tile SAFE product
(``scripts/bench.py``: lossless JPEG2000, 1024 x 1024 code blocks and 6 resolutions, as ESA's
products): a 1280 m raw chip of one 10 m band (128 x 128 pixels), a 400 m one, a 20 m band,
and the 3-band PNG composite, each at points spread over the tile, every read a fresh open
(no GDAL block cache between chips, the OS page cache warm after the first). Values are
SYNTHETIC (bench.py's fields); the decode cost depends on the file layout, not the values.
"""

from __future__ import annotations

import datetime as dt
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def chip_latency(safe: Path, emit: Callable[..., None], points: int = 8) -> dict[str, float]:
    """Time the chips of ``points`` locations of the SAFE product's tile; emit one record per kind.

    Returns
    -------
    dict
        Median seconds per chip by kind.
    """
    from pyproj import Transformer

    from cbm_ops.analyst import chipcut, chips
    from cbm_ops.config import AoiConfig
    from cbm_ops.extract.store import MountStore

    eodata = safe.parents[6]
    cfg = AoiConfig(name="bench_chips", start_date=dt.date(2023, 1, 1), store={"root": str(eodata)})
    name = safe.name.removesuffix(".SAFE")
    scene = chips.Scene("bench_chips", 1, name, dt.datetime.strptime(name.split("_")[2], "%Y%m%dT%H%M%S"), "s2",
                        "/eodata/" + str(safe.relative_to(eodata)), "05.10")
    to_ll = Transformer.from_crs(32631, 4326, always_xy=True)
    where = [to_ll.transform(499980 + 109800 * (i + 0.5) / points, 5700000 - 109800 * (i + 0.5) / points)
             for i in range(points)]
    store = MountStore(eodata)
    out = {}
    kinds = {"raw_10m_1280m": (["B04"], 1280.0), "raw_10m_400m": (["B04"], 400.0), "raw_20m_1280m": (["B11"], 1280.0),
             "png_3_bands_1280m": (["B08", "B04", "B11"], 1280.0)}
    for kind, (bands, size) in kinds.items():
        times = []
        for lon, lat in where:
            t0 = time.perf_counter()
            cut = chips.cut_scene(store, cfg, scene, bands, lon, lat, size, same_grid=len(bands) > 1)
            if len(bands) > 1:
                [chipcut.stretch(c.data, c.nodata, "percentile", (5, 95)) for _, c, _ in cut.bands]
            times.append(time.perf_counter() - t0)
        out[kind] = statistics.median(times)
        emit(f"chip_{kind}", round(out[kind], 3), "s per chip", runs=[round(t, 3) for t in times],
             shape=list(cut.bands[0][1].data.shape),
             note="full-tile lossless JPEG2000 (10980 x 10980, 1024 blocks), fresh open per chip, SYNTHETIC values")
    return out
