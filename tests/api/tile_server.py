"""A local XYZ tile server for the background routes' tests (no outside request).

It serves ``/{z}/{x}/{y}.png`` (256 px, EPSG:3857, the OSM/Google tiling) cut from one RGB
GeoTIFF with rasterio's ``reproject``; :func:`true_colour` makes that GeoTIFF from a REAL
Sentinel-2 product of the bundled sample (B04, B03, B02 stretched between their 2nd and
98th percentiles), so the backgrounds the ``cbm`` client draws show the demo parcels' real
fields. Outside the image the tiles are black. Requests are counted per path (the tests
check that a configured source was asked and that nothing else was).
"""

from __future__ import annotations

import io
import math
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np

HALF = 20037508.342789244


def tile_bounds(z: int, x: int, y: int) -> tuple[float, float, float, float]:
    """(west, south, east, north) of an XYZ tile in EPSG:3857 metres."""
    size = 2 * HALF / 2 ** z
    return -HALF + x * size, HALF - (y + 1) * size, -HALF + (x + 1) * size, HALF - y * size


def true_colour(product_dir: Path, out: Path) -> Path:
    """An RGB uint8 GeoTIFF (the product's UTM CRS) of B04, B03, B02 of a sample S2 product."""
    import rasterio

    layers, profile = [], None
    for band in ("B04", "B03", "B02"):
        path = next(product_dir.glob(f"GRANULE/*/IMG_DATA/R10m/*_{band}_10m.jp2"))
        with rasterio.open(path) as ds:
            a = ds.read(1).astype(np.float64)
            profile = {"crs": ds.crs, "transform": ds.transform, "width": ds.width, "height": ds.height}
        lo, hi = np.percentile(a[a > 0], (2, 98))
        layers.append(np.clip(255 * (a - lo) / (hi - lo), 0, 255).astype(np.uint8))
    assert profile is not None
    with rasterio.open(out, "w", driver="GTiff", count=3, dtype="uint8", **profile) as dst:
        dst.write(np.stack(layers))
    return out


class TileServer:
    """Serves the tiles of ``image`` on 127.0.0.1 at a free port until :meth:`stop`."""

    def __init__(self, image: Path):
        import rasterio

        with rasterio.open(image) as ds:
            self.src, self.crs, self.transform = ds.read(), ds.crs, ds.transform
        self.hits: Counter[str] = Counter()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 - http.server's name
                server.hits[self.path] += 1
                parts = self.path.strip("/").removesuffix(".png").split("/")
                try:
                    z, x, y = (int(p) for p in parts)
                except ValueError:
                    self.send_error(404)
                    return
                body = server.tile(z, x, y)
                self.send_response(200)
                self.send_header("Content-Type", "image/png")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):  # quiet
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    @property
    def template(self) -> str:
        return f"http://127.0.0.1:{self.port}/{{z}}/{{x}}/{{y}}.png"

    def tile(self, z: int, x: int, y: int) -> bytes:
        """One 256 x 256 PNG tile (bilinear reprojection of the image)."""
        from PIL import Image
        from rasterio.transform import from_bounds
        from rasterio.warp import Resampling, reproject

        out = np.zeros((3, 256, 256), np.uint8)
        if 0 <= z <= 24 and 0 <= x < 2 ** z and 0 <= y < 2 ** z and not math.isnan(x):
            reproject(self.src, out, src_transform=self.transform, src_crs=self.crs,
                      dst_transform=from_bounds(*tile_bounds(z, x, y), 256, 256), dst_crs="EPSG:3857",
                      resampling=Resampling.bilinear, src_nodata=0, dst_nodata=0)
        buf = io.BytesIO()
        Image.fromarray(np.ascontiguousarray(np.moveaxis(out, 0, -1))).save(buf, format="PNG")
        return buf.getvalue()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
