"""Image chips around a location, from the scene store: the JRC API's chip routes.

The JRC server found scenes in the CREODIAS finder and cut chips on worker VMs
(ec-jrc/cbm ``api/scripts/chip_extract``). Here the scenes are the AOI's ``dias_catalogue``
(footprint containing the point, the date window, superseded products left out), one per
datatake for Sentinel-2 and one per day for Sentinel-1 (:func:`select_scenes`), and the
bands are read from the AOI's scene store through the same interface as the extraction
(:func:`cbm_ops.extract.store.make_store`, ``store.product(rel)``, ``prod.glob/local``, and
:func:`cbm_ops.extract.scenes.band_files` for the product layout), so a mounted ``/eodata``,
S3 or any store the extraction learns to read serves chips unchanged.

:class:`ChipMaker` cuts the chips of a request in a small thread pool of its own (never the
extraction's, never the database's), caches them on disk under an unguessable directory per
request (:class:`ChipCache`) and answers the JRC's JSON index ``{"dates": [...], "chips":
[...]}`` with paths under the API root that the ``cbm`` client downloads without
credentials, as it did from the JRC's ``/static/tmp``.

Chip values (:mod:`.chipcut`): Sentinel-2 bands as the product file's DN (uint16; SCL uint8
classes), with the GDAL band scale 1e-4 and offset BOA_ADD_OFFSET x 1e-4, so that
reflectance = DN * scale + offset (``parcelTimeSeries`` values are DN + BOA_ADD_OFFSET);
Sentinel-1 CARD-BS as linear gamma0 (float32), CARD-COH6 as coherence.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import logging
import math
import os
import re
import secrets
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..config import S2_NATIVE_RES, AoiConfig, ApiSettings
from ..db import q
from ..errors import BadRequest, SceneError, StorePathError, UpstreamError
from . import chipcut

log = logging.getLogger(__name__)

S2_CHIP_BANDS = ("B02", "B03", "B04", "B08", "B05", "B06", "B07", "B8A", "B11", "B12", "SCL")  # the JRC's list
S1_PLEVELS = {"CARD-BS": "bs", "CARD-COH6": "c6"}
STATIC_PREFIX = "/static/tmp"            # where the JRC served chip files; the client prefixes its API URL
_TOKEN = re.compile(r"^[0-9a-f]{32}$")
_FILE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,200}$")
PRUNE_EVERY_S = 30.0


# ----------------------------------------------------------------- request checks
def date_window(start_date: str, end_date: str) -> tuple[dt.datetime, dt.datetime]:
    """``[start 00:00, end + 1 day)`` of two ``YYYY-MM-DD`` dates (end inclusive, as the JRC).

    Raises
    ------
    BadRequest
        A date that is not ``YYYY-MM-DD``, or the end before the start.
    """
    out = []
    for name, v in (("start_date", start_date), ("end_date", end_date)):
        try:
            if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", v or ""):
                raise ValueError
            out.append(dt.datetime.strptime(v, "%Y-%m-%d"))
        except ValueError:
            raise BadRequest(f"{name}: {str(v)[:30]!r} is not a date YYYY-MM-DD") from None
    if out[1] < out[0]:
        raise BadRequest(f"end_date: {end_date} is before start_date {start_date}")
    return out[0], out[1] + dt.timedelta(days=1)


def check_chipsize(chipsize: float, settings: ApiSettings) -> float:
    """A chip edge in metres, 0 < chipsize <= ``CBM_CHIPS_MAX_SIZE_M``.

    Raises
    ------
    BadRequest
        Out of range or not finite.
    """
    if not (isinstance(chipsize, int | float) and math.isfinite(chipsize) and chipsize > 0):
        raise BadRequest(f"chipsize: {chipsize!r} is not a chip edge in metres")
    if chipsize > settings.chips_max_size_m:
        raise BadRequest(f"chipsize: {chipsize:g} m is larger than the {settings.chips_max_size_m:g} m allowed")
    return float(chipsize)


def check_count(n: int, limit: int, what: str) -> None:
    """At most ``limit`` chips in one request (the JRC's 24 / 36; it answered ``{}`` above).

    Raises
    ------
    BadRequest
        Saying how many were asked for and how to narrow the request.
    """
    if n > limit:
        raise BadRequest(f"{what}: {n} chips, at most {limit} per request; narrow the window "
                         "(start_date/end_date) or ask for fewer products or bands")


def chip_box(lon: float, lat: float, chipsize: float) -> bytes:
    """The chip square around (lon, lat) in its UTM zone, as EPSG:4326 WKB (for the overlap rank)."""
    import shapely
    from pyproj import Transformer

    from ..naming import utm_epsg_for_lonlat

    tr = Transformer.from_crs(4326, utm_epsg_for_lonlat(lon, lat), always_xy=True)
    x, y = tr.transform(lon, lat)
    h = chipsize / 2.0
    square = shapely.segmentize(shapely.box(x - h, y - h, x + h, y + h), h / 4)
    xy = shapely.get_coordinates(square)
    xs, ys = tr.transform(xy[:, 0], xy[:, 1], direction="INVERSE")
    return shapely.to_wkb(shapely.Polygon(list(zip(xs, ys, strict=True))))


# ----------------------------------------------------------------- scene selection
@dataclass(frozen=True)
class Scene:
    """A product chips are cut from.

    Attributes
    ----------
    aoi : str
        The AOI whose catalogue and store it comes from.
    obsid, reference, obstime, card, product_identifier, baseline
        Its ``dias_catalogue`` record (``reference`` without ``.SAFE``; obstime naive UTC).
    """

    aoi: str
    obsid: int
    reference: str
    obstime: dt.datetime
    card: str
    product_identifier: str | None
    baseline: str | None

    @property
    def date_key(self) -> str:
        """The JRC's date of a chip: the datatake sensing time of an S2 name (3rd field), the
        sensing start of an S1 name (5th field), ``YYYYMMDDTHHMMSS``."""
        parts = self.reference.split("_")
        field = 2 if self.card == "s2" else 4
        if len(parts) > field and re.fullmatch(r"\d{8}T\d{6}", parts[field]):
            return parts[field]
        return self.obstime.strftime("%Y%m%dT%H%M%S")


def _scenes(cfg: AoiConfig, rows) -> list[Scene]:
    return [Scene(cfg.name, r[0], r[1], r[2], r[3].strip(), r[4], r[5]) for r in rows]


def select_scenes(conn, cfg: AoiConfig, lon: float, lat: float, start: dt.datetime, end: dt.datetime,
                  card: str, chipsize: float) -> list[Scene]:
    """The products of ``card`` for chips at (lon, lat) sensed in ``[start, end)``.

    One per datatake (S2) or per day (S1): the one whose footprint covers most of the chip
    square, then the newest baseline, then the smallest name (``include/sql/chips_scenes.sql``).

    Returns
    -------
    list of Scene
        By sensing time.
    """
    cur = conn.execute(q("chips_scenes", schema=cfg.schema),
                       {"lon": float(lon), "lat": float(lat), "start": start, "end": end, "card": card,
                        "per_day": card != "s2", "box": chip_box(lon, lat, chipsize)})
    return _scenes(cfg, cur)


def scenes_by_reference(conn, cfg: AoiConfig, references: Sequence[str]) -> list[Scene]:
    """The (not superseded) products of ``references`` in the AOI's catalogue."""
    cur = conn.execute(q("chips_scenes_by_reference", schema=cfg.schema), {"references": list(references)})
    return _scenes(cfg, cur)


# ----------------------------------------------------------------- cache
class ChipCache:
    """Chip files on disk, one directory per request under an unguessable name.

    The directory name is an HMAC of the request (location, size, bands, stretch and the
    AOIs searched) with the API's secret (``CBM_API_SECRET``, else a random key created once
    in the cache directory, mode 600): it is the same for the same request (the ``cbm``
    client de-duplicates its downloads by path), it cannot be guessed without the secret,
    and only a caller who was allowed the request learns it. The oldest directories are
    removed when the cache grows past ``CBM_CHIPS_CACHE_MB``.
    """

    def __init__(self, root: Path, secret: str | None = None, max_mb: float = 500.0):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._key = (secret or self._stored_secret()).encode()
        self.max_bytes = int(max_mb * 1e6)
        self._lock = threading.Lock()
        self._pruned = 0.0

    def _stored_secret(self) -> str:
        """The cache's random key, created once (written aside, then linked: other processes of
        the API never read a half-written key)."""
        path = self.root / ".secret"
        if not path.exists():
            fd, tmp = tempfile.mkstemp(prefix=".secret-", dir=self.root)   # mode 600
            try:
                with os.fdopen(fd, "w") as f:
                    f.write(secrets.token_hex(32))
                os.link(tmp, path)
            except FileExistsError:
                pass                                                       # another process was first
            finally:
                os.unlink(tmp)
        return path.read_text().strip()

    def token(self, request: dict[str, Any]) -> str:
        """The directory name of a request (32 hex digits)."""
        msg = json.dumps(request, sort_keys=True, default=str).encode()
        return hmac.new(self._key, msg, hashlib.sha256).hexdigest()[:32]

    def path(self, token: str, name: str) -> Path:
        """Where the file ``name`` of request ``token`` is (or will be) cached."""
        return self.root / token / name

    @staticmethod
    def url(token: str, name: str) -> str:
        """The file's path under the API root (``/static/tmp/<token>/<name>``)."""
        return f"{STATIC_PREFIX}/{token}/{name}"

    def find(self, token: str, name: str) -> Path | None:
        """The cached file of a ``/static/tmp`` path, or None (also for any malformed part)."""
        if not _TOKEN.match(token) or not _FILE.match(name):
            return None
        p = self.root / token / name
        return p if p.is_file() else None

    def prune(self, force: bool = False) -> int:
        """Remove the least recently used request directories above ``max_bytes`` (to 80 %).

        Returns
        -------
        int
            Directories removed.
        """
        now = time.monotonic()
        with self._lock:
            if not force and now - self._pruned < PRUNE_EVERY_S:
                return 0
            self._pruned = now
            dirs = []
            for d in self.root.iterdir():
                if d.is_dir() and _TOKEN.match(d.name):
                    files = [f.stat() for f in d.iterdir() if f.is_file()]
                    dirs.append((d.stat().st_mtime, sum(f.st_size for f in files), d))
            total, removed = sum(s for _, s, _ in dirs), 0
            for _, size, d in sorted(dirs):
                if total <= self.max_bytes * (0.8 if removed or total > self.max_bytes else 1.0):
                    break
                shutil.rmtree(d, ignore_errors=True)
                total, removed = total - size, removed + 1
            return removed


# ----------------------------------------------------------------- cutting
def band_stage(card: str, band: str) -> str:
    """The stage whose product layout holds ``band`` (S2 by native resolution; S1 = the card)."""
    if card != "s2":
        return card
    return "scl" if band == "SCL" else ("s2_10m" if S2_NATIVE_RES[band] == 10 else "s2_20m")


def _band_file(prod, cfg: AoiConfig, scene: Scene, band: str):
    """The :class:`~cbm_ops.extract.scenes.BandFile` of one band of a product (any S2 band of
    the JRC's list, not only the AOI's extracted ones)."""
    from ..extract.scenes import band_files

    stage = band_stage(scene.card, band)
    one = cfg.model_copy(update={"bands": {stage: (band,)}})
    files, _ = band_files(prod, one, stage, scene.card, scene.reference, scene.baseline)
    return files[0]


@dataclass
class Cut:
    """The chips of one product, band by band: (band, ChipArray, BandFile)."""

    scene: Scene
    bands: list[tuple[str, chipcut.ChipArray, Any]]


def cut_scene(store, cfg: AoiConfig, scene: Scene, bands: Sequence[str], lon: float, lat: float,
              chipsize: float, same_grid: bool = False) -> Cut:
    """Read the chips of ``bands`` of one product around (lon, lat) through the scene store.

    Parameters
    ----------
    store : MountStore or S3Store
        The AOI's scene store (:func:`cbm_ops.extract.store.make_store`).
    same_grid : bool
        Read every band onto the first band's grid (PNG composites).

    Raises
    ------
    SceneError, StorePathError, FileNotFoundError, rasterio.errors.RasterioIOError
        The product or a band cannot be read (the caller skips the product).
    """
    import rasterio

    from ..extract.store import product_path

    rel = product_path(scene.product_identifier, scene.reference, scene.card, scene.obstime)
    out: list[tuple[str, chipcut.ChipArray, Any]] = []
    with rasterio.Env(GDAL_NUM_THREADS="1"), store.product(rel) as prod:
        for band in bands:
            bf = _band_file(prod, cfg, scene, band)
            for comp in bf.companions:
                prod.local(comp)
            grid = out[0][1] if same_grid and out else None
            out.append((band, chipcut.read_chip(prod.local(bf.rel), bf.index, lon, lat, chipsize, bf.nodata, grid),
                        bf))
    return Cut(scene, out)


SKIPPED = (SceneError, StorePathError, FileNotFoundError, OSError)


class ChipMaker:
    """Cuts, caches and indexes the chips of the chip routes (one per API process).

    Parameters
    ----------
    settings : ApiSettings
        Cache directory and size, limits, workers (``CBM_CHIPS_*``).
    store_for : callable
        AoiConfig -> the AOI's scene store.
    """

    def __init__(self, settings: ApiSettings, store_for: Callable[[AoiConfig], Any]):
        self.settings = settings
        self.cache = ChipCache(settings.chips_dir, settings.secret, settings.chips_cache_mb)
        self.store_for = store_for
        self.pool = ThreadPoolExecutor(settings.chips_workers, thread_name_prefix="cbm-chips")

    def _run(self, jobs: list[tuple[AoiConfig, Scene]], make: Callable[[AoiConfig, Scene], list[str]]
             ) -> tuple[dict[int, list[str]], int]:
        """``make(cfg, scene)`` for every job in the pool: {job index: file names}, skipped count."""
        futures = [self.pool.submit(make, cfg, sc) for cfg, sc in jobs]
        done, errors = {}, []
        for i, f in enumerate(futures):
            try:
                done[i] = f.result()
            except SKIPPED as exc:   # noqa: PERF203 - one unreadable product must not fail the others
                errors.append(f"{jobs[i][1].reference}: {' '.join(str(exc).split())[:200]}")
                log.warning("chip of %s skipped", errors[-1])
        self.cache.prune()
        if jobs and not done:
            raise UpstreamError(f"the scene store gave none of the {len(jobs)} products ({errors[0]})")
        return done, len(errors)

    def raw(self, jobs: list[tuple[AoiConfig, Scene]], band: str, lon: float, lat: float, chipsize: float,
            request: dict[str, Any]) -> tuple[dict[str, list[str]], int]:
        """``rawChipByLocation``: one GeoTIFF of ``band`` per product.

        Returns
        -------
        ({"dates": [...], "chips": [...]}, int)
            The JRC index (``YYYYMMDDTHHMMSS`` dates, ``/static/tmp/...`` paths, by date) and
            the number of products skipped because they could not be read.
        """
        token = self.cache.token({**request, "kind": "raw", "band": band})

        def make(cfg: AoiConfig, sc: Scene) -> list[str]:
            name = f"{sc.reference}.{band}.tif"
            if not self._cached(token, name):
                self._write_tifs(token, self._cut(cfg, sc, [band], lon, lat, chipsize), "{ref}.{band}.tif")
            return [name]

        done, skipped = self._run(jobs, make)
        pairs = sorted((jobs[i][1].date_key, self.cache.url(token, names[0])) for i, names in done.items())
        return {"dates": [d for d, _ in pairs], "chips": [c for _, c in pairs]}, skipped

    def _cached(self, token: str, name: str) -> bool:
        p = self.cache.path(token, name)
        if p.is_file():
            os.utime(p.parent)          # recently used: pruned last
            return True
        return False

    def _cut(self, cfg: AoiConfig, sc: Scene, bands: Sequence[str], lon: float, lat: float, chipsize: float,
             same_grid: bool = False) -> Cut:
        return cut_scene(self.store_for(cfg), cfg, sc, bands, lon, lat, chipsize, same_grid)

    def _write_tifs(self, token: str, cut: Cut, pattern: str) -> None:
        """One GeoTIFF per band of ``cut``, named by ``pattern`` ({ref}, {band})."""
        for band, chip, bf in cut.bands:
            tags = {"CBM_PRODUCT": cut.scene.reference, "CBM_BAND": band, "CBM_SENSED": cut.scene.obstime.isoformat()}
            scale = offset = None
            if cut.scene.card == "s2" and band != "SCL":
                scale, offset = 1e-4, bf.offset * 1e-4
                tags["CBM_VALUES"] = (f"product DN; reflectance = DN * scale + offset (BOA_ADD_OFFSET {bf.offset}); "
                                      "parcelTimeSeries values = DN + BOA_ADD_OFFSET")
            elif cut.scene.card == "bs":
                tags["CBM_VALUES"] = "gamma0, linear power (dB = 10 log10)"
            elif cut.scene.card == "c6":
                tags["CBM_VALUES"] = "coherence 0-1"
            chipcut.write_geotiff(self.cache.path(token, pattern.format(ref=cut.scene.reference, band=band)),
                                  chip, tags, scale, offset)

    def png(self, jobs: list[tuple[AoiConfig, Scene]], bands: Sequence[str], lut: str | None, lon: float,
            lat: float, chipsize: float, request: dict[str, Any]) -> tuple[list[tuple[str, str, Scene]], int]:
        """``chipsByLocation``: one stretched PNG (1 or 3 bands) per product.

        Returns
        -------
        (list of (date, path, Scene), int)
            By date, and the number of products skipped.
        """
        kind, pairs = chipcut.parse_lut(lut, len(bands))
        token = self.cache.token({**request, "kind": "png", "bands": list(bands), "lut": [kind, pairs]})

        def make(cfg: AoiConfig, sc: Scene) -> list[str]:
            name = f"{sc.reference}.png"
            if not self._cached(token, name):
                cut = self._cut(cfg, sc, bands, lon, lat, chipsize, same_grid=True)
                layers = [chipcut.stretch(c.data, c.nodata, kind, lh) for (_, c, _), lh in zip(cut.bands, pairs,
                                                                                                strict=True)]
                chipcut.write_png(self.cache.path(token, name), layers)
            return [name]

        done, skipped = self._run(jobs, make)
        out = sorted((jobs[i][1].date_key, self.cache.url(token, names[0]), jobs[i][1]) for i, names in done.items())
        return out, skipped

    def batch(self, jobs: list[tuple[AoiConfig, Scene]], bands: Sequence[str], lon: float, lat: float,
              chipsize: float, request: dict[str, Any]) -> tuple[dict[str, list[str]], int]:
        """``rawChipsBatch`` (S2: ``<tile>.<band>.tif``) and ``rawS1ChipsBatch`` (S1:
        ``<product>_<pol>.tif``): every band of every product.

        Returns
        -------
        ({"dates": ["<date>_<band>", ...], "chips": [...]}, int)
            Sorted by date key as the JRC's; products skipped.
        """
        token = self.cache.token({**request, "kind": "batch", "bands": list(bands)})
        s1 = bool(jobs) and jobs[0][1].card != "s2"
        pattern = "{ref}_{band}.tif" if s1 else "{ref}.{band}.tif"

        def make(cfg: AoiConfig, sc: Scene) -> list[str]:
            names = [pattern.format(ref=sc.reference, band=b) for b in bands]
            if not all(self._cached(token, n) for n in names):
                self._write_tifs(token, self._cut(cfg, sc, bands, lon, lat, chipsize), pattern)
            return names

        done, skipped = self._run(jobs, make)
        keyed = sorted((f"{jobs[i][1].date_key}_{b}", self.cache.url(token, n))
                       for i, names in done.items() for b, n in zip(bands, names, strict=True))
        return {"dates": [k for k, _ in keyed], "chips": [c for _, c in keyed]}, skipped
