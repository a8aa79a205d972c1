"""Cutting image chips out of band files: windows around a point, GeoTIFF and stretched PNG.

What the JRC chip extractors did (ec-jrc/cbm ``api/scripts/image_chips/chipRipper2.py`` as of
commit ``a367667``, the server the ``cbm`` 0.0.18 client was written against): a square of
``chipsize`` metres centred on the point in the product's own CRS, the native pixels whose
centres fall inside it (``rasterio.mask`` with ``all_touched=False``), native values; for the
PNG composites a per-band linear stretch between two percentiles of the chip.

Everything here works on local files (the scene store hands them over, ``prod.local``) and
only reads: a chip never touches what the extraction writes.
"""

from __future__ import annotations

import math
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import BadRequest

DEFAULT_LUT = (5.0, 95.0)   # the JRC's default stretch: 5th to 95th percentile per band


@dataclass
class ChipArray:
    """One band of a chip.

    Attributes
    ----------
    data : ndarray, shape (H, W), the band's dtype (uint16 S2 DN, uint8 SCL, float32 S1)
        Pixels outside the band file are ``nodata``.
    transform : affine.Affine
        Of ``data[0, 0]``, in the band file's CRS.
    epsg : int
    nodata : float
    """

    data: np.ndarray
    transform: Any
    epsg: int
    nodata: float


def centre_window(transform, x: float, y: float, chipsize: float):
    """The pixels whose centres lie in the square of edge ``chipsize`` (metres) centred on (x, y).

    Parameters
    ----------
    transform : affine.Affine
        North-up grid of the band (metres).
    x, y : float
        Centre in the grid's CRS (metres).
    chipsize : float
        Edge of the square, metres.

    Returns
    -------
    rasterio.windows.Window
        Integer window, possibly outside the image (read it boundless); a square smaller
        than a pixel that holds no pixel centre gives the pixel the point is in.
    """
    from rasterio.windows import Window

    resx, resy = transform.a, -transform.e
    h = chipsize / 2.0
    c0 = math.ceil((x - h - transform.c) / resx - 0.5 - 1e-9)
    c1 = math.floor((x + h - transform.c) / resx - 0.5 + 1e-9)
    r0 = math.ceil((transform.f - (y + h)) / resy - 0.5 - 1e-9)
    r1 = math.floor((transform.f - (y - h)) / resy - 0.5 + 1e-9)
    if c1 < c0:
        c0 = c1 = math.floor((x - transform.c) / resx)
    if r1 < r0:
        r0 = r1 = math.floor((transform.f - y) / resy)
    return Window(c0, r0, c1 - c0 + 1, r1 - r0 + 1)


def _read(ds, index: int, window, nodata: float, out_shape: tuple[int, int] | None = None) -> np.ndarray:
    """A window of band ``index``, filled with ``nodata`` where it leaves the image."""
    from rasterio.enums import Resampling

    inside = (window.col_off >= 0 and window.row_off >= 0 and window.col_off + window.width <= ds.width
              and window.row_off + window.height <= ds.height)
    return ds.read(index, window=window, out_shape=out_shape, boundless=not inside, fill_value=nodata,
                   resampling=Resampling.nearest)


def read_chip(path: str, index: int, lon: float, lat: float, chipsize: float, nodata: float | None,
              grid: ChipArray | None = None) -> ChipArray:
    """The chip of one band file around (lon, lat).

    Parameters
    ----------
    path : str
        Local band file (JPEG2000, GeoTIFF, ENVI), north-up, projected CRS in metres.
    index : int
        1-based band of the file.
    lon, lat : float
        Centre, EPSG:4326 degrees.
    chipsize : float
        Edge of the chip, metres.
    nodata : float or None
        Used when the file declares none (S2: 0).
    grid : ChipArray, optional
        Read onto this chip's grid instead (nearest neighbour): the other bands of a
        composite follow its first band's resolution, as the JRC's.

    Returns
    -------
    ChipArray

    Raises
    ------
    rasterio.errors.RasterioIOError
        The file cannot be read.
    """
    import rasterio
    from pyproj import Transformer
    from rasterio.windows import from_bounds

    with rasterio.open(path) as ds:
        epsg = ds.crs.to_epsg() if ds.crs else None
        if not epsg:
            raise rasterio.errors.RasterioIOError(f"{os.path.basename(path)}: no EPSG CRS")
        fill = ds.nodatavals[index - 1] if ds.nodatavals[index - 1] is not None else (nodata or 0)
        if grid is not None:
            h, w = grid.data.shape
            t = grid.transform
            win = from_bounds(t.c, t.f + t.e * h, t.c + t.a * w, t.f, ds.transform)
            return ChipArray(_read(ds, index, win, fill, (h, w)), grid.transform, epsg, float(fill))
        x, y = Transformer.from_crs(4326, epsg, always_xy=True).transform(lon, lat)
        win = centre_window(ds.transform, x, y, chipsize)
        return ChipArray(_read(ds, index, win, fill), ds.window_transform(win), epsg, float(fill))


def _atomic(path: Path):
    """A temporary file beside ``path`` (renamed over it when written)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".part-", suffix=path.suffix, dir=path.parent)
    os.close(fd)
    return tmp


def write_geotiff(path: Path, chip: ChipArray, tags: dict[str, str] | None = None,
                  scale: float | None = None, offset: float | None = None) -> None:
    """Write one band chip as a DEFLATE GeoTIFF (native dtype, CRS, transform, nodata).

    ``scale``/``offset`` become the GDAL band scale and offset (physical value = DN *
    scale + offset), e.g. S2 reflectance = DN / 10000 + BOA_ADD_OFFSET / 10000. The file
    appears under its name only when complete.
    """
    import rasterio

    tmp = _atomic(path)
    try:
        h, w = chip.data.shape
        with rasterio.open(tmp, "w", driver="GTiff", width=w, height=h, count=1, dtype=chip.data.dtype,
                           crs=f"EPSG:{chip.epsg}", transform=chip.transform, nodata=chip.nodata,
                           compress="deflate") as out:
            out.write(chip.data, 1)
            if tags:
                out.update_tags(**tags)
            if scale is not None:
                out.scales = (scale,)
                out.offsets = (offset or 0.0,)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def parse_lut(lut: str | None, bands: int) -> tuple[str, list[tuple[float, float]]]:
    """The JRC ``lut`` stretch: ``low_high`` percentiles, or ``l1_h1_l2_h2_l3_h3`` values per band.

    Parameters
    ----------
    lut : str or None
        ``None``, empty or ``"None"`` (the ``cbm`` client's default) mean ``5_95``.
    bands : int
        Bands of the composite (1 or 3).

    Returns
    -------
    ("percentile" | "value", list of (low, high))
        One pair per band.

    Raises
    ------
    BadRequest
        Not numbers, percentiles outside 0-100, low >= high, or a pair count that fits
        neither form.
    """
    if lut is None or lut.strip() in ("", "None"):
        return "percentile", [DEFAULT_LUT] * bands
    try:
        v = [float(p) for p in lut.split("_")]
    except ValueError:
        raise BadRequest(f"lut: {lut[:40]!r} is not low_high percentiles or low_high pairs per band") from None
    if len(v) == 2 and 0 <= v[0] < v[1] <= 100:
        return "percentile", [(v[0], v[1])] * bands
    if len(v) == 2 * bands and all(v[2 * i] < v[2 * i + 1] for i in range(bands)) and all(map(math.isfinite, v)):
        return "value", [(v[2 * i], v[2 * i + 1]) for i in range(bands)]
    raise BadRequest(f"lut: {lut[:40]!r}: give low_high percentiles (0 <= low < high <= 100) or "
                     f"{bands} low_high value pairs")


def stretch(data: np.ndarray, nodata: float, kind: str, low_high: tuple[float, float]) -> np.ndarray:
    """Linear stretch to uint8, ``clip(255 (x - low) / (high - low), 0, 255)``; nodata -> 0.

    ``kind="percentile"``: ``low``/``high`` are percentiles of the valid pixels (the JRC's
    ``chipRipper2.py``); ``"value"``: the values themselves.
    """
    valid = (data != nodata) & np.isfinite(data)
    out = np.zeros(data.shape, np.uint8)
    if not valid.any():
        return out
    x = data[valid].astype(np.float64)
    lo, hi = np.percentile(x, low_high) if kind == "percentile" else low_high
    if hi <= lo:
        hi = lo + 1.0
    out[valid] = np.clip(np.round(255.0 * (x - lo) / (hi - lo)), 0, 255).astype(np.uint8)
    return out


def write_png(path: Path, layers: list[np.ndarray]) -> None:
    """Write 1 (grey) or 3 (RGB) uint8 layers of equal shape as a PNG (Pillow)."""
    from PIL import Image

    arr = layers[0] if len(layers) == 1 else np.dstack(layers)
    tmp = _atomic(path)
    try:
        Image.fromarray(np.ascontiguousarray(arr)).save(tmp, format="PNG")   # 2-D: L, H x W x 3: RGB
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
