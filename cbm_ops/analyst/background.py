"""Background images around a point from a tile or WMS source configured per AOI (``jrc.backgrounds``).

What the JRC's ``backgroundByLocation`` does (ec-jrc/cbm ``api/scripts/backgroundExtract.py``):
the point in EPSG:3857, a square of ``extend`` EPSG:3857 metres around it (on the ground
that is ``extend`` x cos(latitude)), read from a GDAL_WMS source resampled to ``chipsize`` x
``chipsize`` pixels, written as a GeoTIFF or PNG in EPSG:3857. The same is done here with
GDAL's WMS driver (through rasterio): an XYZ template becomes a GDAL ``TMS`` service
description (:func:`wms_xml`); a ``wms`` source is the JRC-style XML file itself. The
georeference is the square itself (the JRC's is shifted by half a pixel).

Only the API server talks to the tile server, only for AOIs that configure one; an AOI
without ``jrc.backgrounds`` never causes an outside request.
"""

from __future__ import annotations

import hashlib
import html
import json
from pathlib import Path
from typing import Any

import numpy as np

from ..config import AoiConfig, BackgroundSource
from ..errors import BadRequest, UpstreamError
from . import chipcut

MAX_CHIPSIZE_PX = 2048          # JRC docs: "chipsize < 1280"; the output is chipsize^2 pixels
MAX_EXTEND_M = 50_000.0
WEB_MERCATOR_HALF = 20037508.342789244


def wms_xml(src: BackgroundSource, cfg: AoiConfig) -> str:
    """The GDAL_WMS service description of a source.

    An XYZ template (``{z}/{x}/{y}``, ``{-y}`` for TMS rows) becomes GDAL's ``TMS``
    service over the whole EPSG:3857 square with ``max_zoom`` levels, 256-pixel tiles,
    3 bands, the source's timeout and no disk cache (GDAL WMS driver documentation).

    Raises
    ------
    BadRequest
        The configured ``wms`` file cannot be read.
    """
    if src.wms is not None:
        path = cfg.resolve(src.wms)
        try:
            return Path(str(path)).read_text()
        except OSError as exc:
            raise BadRequest(f"AOI {cfg.name}: background file {path}: {exc.strerror}") from None
    if src.url is None:
        raise BadRequest(f"AOI {cfg.name}: a background source needs url or wms")
    top = "bottom" if "{-y}" in src.url else "top"
    url = html.escape(src.url.replace("{-y}", "${y}").replace("{z}", "${z}").replace("{x}", "${x}")
                      .replace("{y}", "${y}"), quote=False)
    h = WEB_MERCATOR_HALF
    return (f"<GDAL_WMS><Service name=\"TMS\"><ServerUrl>{url}</ServerUrl></Service>"
            f"<DataWindow><UpperLeftX>{-h}</UpperLeftX><UpperLeftY>{h}</UpperLeftY><LowerRightX>{h}</LowerRightX>"
            f"<LowerRightY>{-h}</LowerRightY><TileLevel>{src.max_zoom}</TileLevel><TileCountX>1</TileCountX>"
            f"<TileCountY>1</TileCountY><YOrigin>{top}</YOrigin></DataWindow><Projection>EPSG:3857</Projection>"
            "<BlockSizeX>256</BlockSizeX><BlockSizeY>256</BlockSizeY><BandsCount>3</BandsCount>"
            f"<Timeout>{max(int(src.timeout_s), 1)}</Timeout><MaxConnections>2</MaxConnections>"
            "<UserAgent>cbm-airflow parcel API</UserAgent><ZeroBlockHttpCodes>204,404</ZeroBlockHttpCodes>"
            "</GDAL_WMS>")


def square_3857(lon: float, lat: float, extend: float) -> tuple[float, float, float, float]:
    """(west, south, east, north) of the square of ``extend`` EPSG:3857 metres centred on the point."""
    from pyproj import Transformer

    x, y = Transformer.from_crs(4326, 3857, always_xy=True).transform(lon, lat)
    h = extend / 2.0
    return x - h, y - h, x + h, y + h


def check_request(chipsize: int, extend: float) -> None:
    """Raise :class:`BadRequest` for a size outside 1..MAX_CHIPSIZE_PX pixels or 1..MAX_EXTEND_M metres."""
    if not 1 <= chipsize <= MAX_CHIPSIZE_PX:
        raise BadRequest(f"chipsize: {chipsize} pixels is outside 1..{MAX_CHIPSIZE_PX}")
    if not 1 <= extend <= MAX_EXTEND_M:
        raise BadRequest(f"extend: {extend:g} m is outside 1..{MAX_EXTEND_M:g} (EPSG:3857 metres)")


def read_background(xml_path: Path, bounds: tuple[float, float, float, float], chipsize: int) -> np.ndarray:
    """The source's pixels over ``bounds`` (EPSG:3857), resampled to (bands, chipsize, chipsize).

    Raises
    ------
    UpstreamError
        GDAL could not read the source (tile server down, timeout, bad answer).
    """
    import rasterio
    from rasterio.enums import Resampling
    from rasterio.errors import RasterioError
    from rasterio.windows import from_bounds

    try:
        with rasterio.Env(GDAL_HTTP_MAX_RETRY="1", GDAL_HTTP_RETRY_DELAY="1", GDAL_DISABLE_READDIR_ON_OPEN="YES"), \
                rasterio.open(xml_path) as ds:
            win = from_bounds(*bounds, transform=ds.transform)
            return ds.read(window=win, out_shape=(ds.count, chipsize, chipsize), resampling=Resampling.bilinear,
                           boundless=True, fill_value=0)
    except RasterioError as exc:
        raise UpstreamError(f"background source: {' '.join(str(exc).split())[:300]}") from None


def outline_pixels(geom_4326: dict[str, Any], bounds: tuple[float, float, float, float], chipsize: int
                   ) -> list[list[tuple[float, float]]]:
    """The rings of a GeoJSON (EPSG:4326) geometry as pixel coordinates of the image over ``bounds``."""
    import shapely
    from pyproj import Transformer

    tr = Transformer.from_crs(4326, 3857, always_xy=True)
    g = shapely.from_geojson(json.dumps(geom_4326))
    res = (bounds[2] - bounds[0]) / chipsize
    rings = []
    for poly in getattr(g, "geoms", [g]):
        for ring in (poly.exterior, *poly.interiors):
            xs, ys = tr.transform(*np.asarray(ring.coords).T[:2])
            rings.append([((x - bounds[0]) / res, (bounds[3] - y) / res) for x, y in zip(xs, ys, strict=True)])
    return rings


def write_background(path: Path, arr: np.ndarray, bounds: tuple[float, float, float, float], fmt: str,
                     outline: list[list[tuple[float, float]]] | None = None) -> None:
    """Write the image as an EPSG:3857 GeoTIFF (``fmt="tif"``) or a PNG (with the parcel
    ``outline`` drawn in yellow, as the JRC's ``withGeometry``)."""
    import rasterio
    from rasterio.transform import from_bounds as transform_from_bounds

    if fmt == "tif":
        tmp = chipcut._atomic(path)
        try:
            with rasterio.open(tmp, "w", driver="GTiff", width=arr.shape[2], height=arr.shape[1], count=arr.shape[0],
                               dtype=arr.dtype, crs="EPSG:3857", compress="deflate",
                               transform=transform_from_bounds(*bounds, arr.shape[2], arr.shape[1])) as out:
                out.write(arr)
            Path(tmp).replace(path)
        finally:
            Path(tmp).unlink(missing_ok=True)
        return
    from PIL import Image, ImageDraw

    img = Image.fromarray(np.ascontiguousarray(np.moveaxis(arr[:3].astype(np.uint8), 0, -1)))
    for ring in outline or []:
        ImageDraw.Draw(img).line(ring, fill=(255, 255, 0), width=2)
    tmp = chipcut._atomic(path)
    try:
        img.save(tmp, format="PNG")
        Path(tmp).replace(path)
    finally:
        Path(tmp).unlink(missing_ok=True)


def xml_file(directory: Path, src: BackgroundSource, cfg: AoiConfig) -> Path:
    """The source's GDAL_WMS description as a file of ``directory`` (named by its content)."""
    text = wms_xml(src, cfg)
    path = directory / f"wms-{hashlib.sha256(text.encode()).hexdigest()[:16]}.xml"
    if not path.exists():
        tmp = chipcut._atomic(path)
        Path(tmp).write_text(text)
        Path(tmp).replace(path)
    return path
