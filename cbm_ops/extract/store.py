"""Where scene files come from: a mounted directory, S3, or the hrefs of a STAC item.

* :class:`MountStore` reads products in place under a root such as ``/eodata`` (the
  CREODIAS/CDSE mount, or the bundled sample in ``include/sample/eodata``).
* :class:`S3Store` lists the product with boto3 (CDSE: ``s3://eodata``, path-style, endpoint
  ``eodata.dataspace.copernicus.eu``); GeoTIFF/COG bands are read in place with HTTP range
  requests through GDAL ``/vsis3/`` (``store.range_reads``), other files (JP2, metadata)
  are downloaded into a per-scene cache directory, removed when the scene is done, also on
  failure.
* :class:`AssetProduct` (``store.product(rel, assets=...)`` for ``stac:`` records): the COG
  hrefs of a STAC item (Earth Search, Planetary Computer) read with range requests through
  ``/vsicurl/`` (https) or ``/vsis3/`` (s3), signed at read time
  (:func:`cbm_ops.harvest.assets.make_signer`). Nothing is downloaded whole but the
  product metadata.

Every product gives :meth:`raster` (a :class:`RasterSource`: the path rasterio opens and
the GDAL settings it needs), :meth:`glob` and :meth:`local` (:class:`ProductFiles`).

A product's location is its ``product_identifier`` (``/eodata/Sentinel-2/...``) with the
``/eodata/`` prefix taken as the store root, or else the reference layout
(:func:`cbm_ops.naming.store_path`); STAC COG items are ``stac:<collection>/<id>``.

S3 endpoint, bucket and credentials come from the Airflow connection (``aws`` type:
login = access key, password = secret key, extra ``endpoint_url``), passed in by the DAG,
or from the environment: ``CBM_S3_ENDPOINT_URL`` and boto3's own ``AWS_ACCESS_KEY_ID`` /
``AWS_SECRET_ACCESS_KEY``. They are never logged.

CDSE free-tier limits (CDSE doc "Quotas": 4 concurrent connections, 2,000 requests/min on
S3): boto3 is given ``max_pool_connections = store.max_connections`` and one transfer thread,
and every boto3 request waits for a token of a per-process limiter of
``store.max_requests_per_minute``; GDAL range reads use ``GDAL_NUM_THREADS=1`` (one
connection per reading process: GDAL has no connection cap, measured 17 connections with 4
decoding threads) and large chunks. GDAL's own requests are not counted by the limiter:
bound the processes that read at once with the extraction pool (docs/harvest.md).
"""

from __future__ import annotations

import contextlib
import fnmatch
import logging
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

from .. import naming
from ..config import AoiConfig, StoreConfig
from ..errors import StorePathError
from ..http import retrying_session

log = logging.getLogger(__name__)


# GDAL settings of every remote read (measured on GDAL 3.10 with a local range server and
# moto: 4 requests per window instead of 14 without them; docs/harvest.md).
REMOTE_GDAL = {"GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR",
               "CPL_VSIL_CURL_ALLOWED_EXTENSIONS": ".tif,.TIF,.tiff,.TIFF,.jp2,.JP2,.xml",
               "GDAL_HTTP_MAX_RETRY": "4", "GDAL_HTTP_RETRY_DELAY": "0.5",
               "GDAL_NUM_THREADS": "1", "CPL_VSIL_CURL_CHUNK_SIZE": "1048576", "VSI_CACHE": "TRUE"}


@dataclass(frozen=True)
class RasterSource:
    """What rasterio opens for one band file.

    Attributes
    ----------
    path : str
        A local file, or a GDAL virtual path (``/vsis3/bucket/key``, ``/vsicurl/https://...``).
    options : dict
        GDAL configuration options of the read (``rasterio.Env``).
    session : rasterio.session.Session or None
        Credentials of an S3 read (``AWSSession``); never logged.
    local : bool
        A file on disk (its size can be checked against its header).
    """

    path: str
    options: dict[str, str] = field(default_factory=dict)
    session: Any = field(default=None, repr=False)
    local: bool = True

    def env(self) -> contextlib.AbstractContextManager[Any]:
        """The ``rasterio.Env`` of the read (a no-op for a local file)."""
        if self.local and not self.options and self.session is None:
            return contextlib.nullcontext()
        import rasterio

        return rasterio.Env(session=self.session, **self.options) if self.session is not None \
            else rasterio.Env(**self.options)


class ProductFiles(Protocol):
    """The files of one product, relative to the product directory."""

    name: str

    def raster(self, rel: str) -> RasterSource:
        """What rasterio opens for the band file ``rel`` (in place when it can be read so).

        Raises
        ------
        FileNotFoundError
            If the file does not exist in the store.
        """

    def glob(self, pattern: str) -> list[str]:
        """Relative paths matching a glob pattern (``*`` does not cross ``/``), sorted."""

    def local(self, rel: str) -> str:
        """A local file path for ``rel`` (downloaded first for S3).

        Raises
        ------
        FileNotFoundError
            If the file does not exist in the store.
        """


def product_path(product_identifier: str | None, reference: str, card: str, obstime) -> str:
    """Path of a product relative to the store root.

    Raises
    ------
    StorePathError
        If the catalogue's identifier would escape the store root (``..`` components):
        a catalogue record must not make a worker read elsewhere on its disk or bucket.
    """
    if product_identifier and product_identifier.startswith("stac:"):
        return product_identifier          # a STAC item's hrefs (AssetProduct), not a path
    if product_identifier and product_identifier.startswith("/eodata/"):
        rel = product_identifier[len("/eodata/"):].rstrip("/")
    else:
        rel = naming.store_path(reference, card, obstime)
    parts = rel.split("/")
    if not rel or rel.startswith("/") or any(p in ("..", "") for p in parts):
        raise StorePathError(f"product path {product_identifier or rel!r} leaves the store root")
    return rel


class _MountProduct:
    def __init__(self, root: Path, name: str):
        self.root, self.name = root, name

    def raster(self, rel: str) -> RasterSource:
        return RasterSource(self.local(rel))

    def glob(self, pattern: str) -> list[str]:
        return sorted(str(p.relative_to(self.root)) for p in self.root.glob(pattern) if p.is_file())

    def local(self, rel: str) -> str:
        p = self.root / rel
        if not p.is_file():
            raise FileNotFoundError(f"{p} does not exist")
        return str(p)


class MountStore:
    """Products read in place from a mounted directory tree."""

    def __init__(self, root: str | Path, *, signer: Callable[[str], str] | None = None,
                 boa_offset_applied: str = "trust_flag"):
        self.root = Path(root)
        self.signer, self.boa_offset_applied = signer, boa_offset_applied
        if not self.root.is_dir():
            raise FileNotFoundError(f"store root {self.root} is not a directory (is /eodata mounted?)")

    def available(self) -> bool:
        """Whether the store is there: its root is a directory with something in it.

        An unmounted /eodata leaves its empty mount point, a failed network mount raises
        an OSError: either way no product is missing, the whole store is.
        """
        try:
            with os.scandir(self.root) as it:
                return next(it, None) is not None
        except OSError:
            return False

    @contextmanager
    def product(self, rel: str, assets: dict[str, Any] | None = None) -> Iterator[ProductFiles]:
        """The product at ``rel`` (``stac:`` records: the item's hrefs, ``assets``).

        Raises
        ------
        FileNotFoundError
            If the product is not in the store (or a ``stac:`` record has no hrefs).
        """
        if rel.startswith("stac:"):
            with asset_product(rel, assets, self.signer, None, self.boa_offset_applied) as ap:
                yield ap
            return
        path = self.root / rel
        if not path.exists():
            raise FileNotFoundError(f"product {path} not found in the store")
        yield _MountProduct(path, Path(rel).name)


class RateLimiter:
    """At most ``per_minute`` calls per minute in this process (a token bucket, refilled
    continuously; bursts of up to 1/10 of a minute): :meth:`wait` blocks until a call may go."""

    def __init__(self, per_minute: int):
        self.rate = per_minute / 60.0
        self.capacity = max(1.0, per_minute / 10.0)
        self.tokens = self.capacity
        self.t = time.monotonic()
        self.lock = threading.Lock()
        self.waited = 0.0

    def wait(self, **_: Any) -> None:
        with self.lock:
            now = time.monotonic()
            self.tokens = min(self.capacity, self.tokens + (now - self.t) * self.rate)
            self.t = now
            if self.tokens < 1.0:
                delay = (1.0 - self.tokens) / self.rate
                time.sleep(delay)
                self.waited += delay
                self.t = time.monotonic()
                self.tokens = 1.0
            self.tokens -= 1.0


@dataclass(frozen=True)
class S3Settings:
    """Bucket access for boto3 and for GDAL ``/vsis3/`` (credentials never logged)."""

    endpoint_url: str | None = None
    credentials: dict[str, str] = field(default_factory=dict, repr=False)
    region: str = "us-east-1"

    def gdal(self, anonymous: bool = False) -> tuple[dict[str, str], Any]:
        """GDAL options and ``AWSSession`` of ``/vsis3/`` reads: the endpoint as host[:port]
        without scheme (GDAL builds ``http://http://...`` otherwise), path-style addressing
        (``AWS_VIRTUAL_HOSTING=FALSE``: ``eodata.<endpoint>`` does not resolve), HTTPS from
        the endpoint's scheme."""
        from rasterio.session import AWSSession

        opts = dict(REMOTE_GDAL)
        endpoint = None
        if self.endpoint_url:
            u = urlsplit(self.endpoint_url if "//" in self.endpoint_url else "https://" + self.endpoint_url)
            endpoint = u.netloc
            opts.update(AWS_VIRTUAL_HOSTING="FALSE", AWS_HTTPS="NO" if u.scheme == "http" else "YES")
        if anonymous:
            return opts, AWSSession(aws_unsigned=True, region_name=self.region, endpoint_url=endpoint)
        c = self.credentials
        return opts, AWSSession(aws_access_key_id=c.get("aws_access_key_id"),
                                aws_secret_access_key=c.get("aws_secret_access_key"),
                                aws_session_token=c.get("aws_session_token"),
                                region_name=c.get("region_name") or self.region, endpoint_url=endpoint)


def _range_read(rel: str, mode: str) -> bool:
    return mode == "always" or (mode == "auto" and rel.lower().endswith((".tif", ".tiff")))


class _S3Product:
    def __init__(self, store: S3Store, prefix: str, cache: Path, name: str):
        self.store, self.client, self.bucket = store, store.client, store.bucket
        self.prefix, self.cache, self.name = prefix, cache, name
        self._keys: list[str] | None = None

    def _list(self) -> list[str]:
        if self._keys is None:
            keys: list[str] = []
            pager = self.client.get_paginator("list_objects_v2")
            for page in pager.paginate(Bucket=self.bucket, Prefix=self.prefix + "/"):
                keys.extend(o["Key"][len(self.prefix) + 1:] for o in page.get("Contents", []))
            self._keys = sorted(keys)
        return self._keys

    def glob(self, pattern: str) -> list[str]:
        parts = pattern.split("/")
        return [k for k in self._list() if len(k.split("/")) == len(parts)
                and all(fnmatch.fnmatchcase(a, b) for a, b in zip(k.split("/"), parts, strict=True))]

    def local(self, rel: str) -> str:
        dst = self.cache / rel
        if not dst.exists():
            from botocore.exceptions import ClientError

            dst.parent.mkdir(parents=True, exist_ok=True)
            try:
                self.client.download_file(self.bucket, f"{self.prefix}/{rel}", str(dst), Config=self.store.transfer)
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                    raise FileNotFoundError(f"s3://{self.bucket}/{self.prefix}/{rel} does not exist") from None
                raise
        return str(dst)

    def raster(self, rel: str) -> RasterSource:
        if not _range_read(rel, self.store.range_reads):
            return RasterSource(self.local(rel))
        if rel not in self._list():
            raise FileNotFoundError(f"s3://{self.bucket}/{self.prefix}/{rel} does not exist")
        opts, session = self.store.settings.gdal()
        return RasterSource(f"/vsis3/{self.bucket}/{self.prefix}/{rel}", opts, session, local=False)


class S3Store:
    """Products on S3: COG bands read in place (range requests), other files downloaded to a
    per-scene cache (removed afterwards).

    Parameters
    ----------
    bucket : str
        ``eodata`` on CDSE.
    endpoint_url : str, optional
        ``https://eodata.dataspace.copernicus.eu`` (CDSE); default ``CBM_S3_ENDPOINT_URL``.
    credentials : dict, optional
        boto3 keyword arguments (``aws_access_key_id``, ``aws_secret_access_key``,
        ``region_name``) from the Airflow connection.
    cfg : StoreConfig, optional
        ``range_reads``, ``region``, ``max_connections``, ``max_requests_per_minute``.
    """

    def __init__(self, bucket: str, *, endpoint_url: str | None = None, cache_dir: str | None = None,
                 credentials: dict[str, str] | None = None, cfg: StoreConfig | None = None,
                 signer: Callable[[str], str] | None = None, boa_offset_applied: str = "trust_flag"):
        import boto3
        from boto3.s3.transfer import TransferConfig
        from botocore.config import Config

        cfg = cfg or StoreConfig(kind="s3", bucket=bucket)
        self.bucket = bucket
        self.cache_dir = cache_dir
        self.range_reads = cfg.range_reads
        self.signer, self.boa_offset_applied = signer, boa_offset_applied
        endpoint = endpoint_url or os.environ.get("CBM_S3_ENDPOINT_URL")
        self.settings = S3Settings(endpoint, dict(credentials or {}), cfg.region)
        self.limiter = RateLimiter(cfg.max_requests_per_minute)
        kw = dict(credentials or {})
        kw.setdefault("region_name", cfg.region)
        self.client = boto3.client(
            "s3", endpoint_url=endpoint,
            config=Config(retries={"max_attempts": 8, "mode": "adaptive"},
                          max_pool_connections=cfg.max_connections, s3={"addressing_style": "path"}),
            **kw)
        self.client.meta.events.register("before-send.s3", self.limiter.wait)
        # one connection per transfer, 64 MB parts: a 127 MB JP2 in 2 GETs (CDSE free tier)
        self.transfer = TransferConfig(max_concurrency=1, use_threads=False, multipart_threshold=64 * 2**20,
                                       multipart_chunksize=64 * 2**20)

    def __repr__(self) -> str:   # no credentials in logs
        return f"S3Store({self.bucket!r}, endpoint={self.settings.endpoint_url!r})"

    def available(self) -> bool:
        """Always True: boto3 retries an unreachable endpoint itself (adaptive mode)."""
        return True

    @contextmanager
    def product(self, rel: str, assets: dict[str, Any] | None = None) -> Iterator[ProductFiles]:
        """The product at ``rel`` (``stac:`` records: the item's hrefs, ``assets``).

        Raises
        ------
        FileNotFoundError
            If the product is not in the bucket (or a ``stac:`` record has no hrefs).
        """
        if rel.startswith("stac:"):
            with asset_product(rel, assets, self.signer, self, self.boa_offset_applied) as ap:
                yield ap
            return
        if self.cache_dir:
            Path(self.cache_dir).mkdir(parents=True, exist_ok=True)
        cache = Path(tempfile.mkdtemp(prefix="cbm-scene-", dir=self.cache_dir))
        try:
            prod = _S3Product(self, rel.rstrip("/"), cache, Path(rel).name)
            if not prod._list():
                raise FileNotFoundError(f"product s3://{self.bucket}/{rel} not found in the store")
            yield prod
        finally:
            shutil.rmtree(cache, ignore_errors=True)


# --------------------------------------------------------------------------- STAC COG items
class AssetProduct:
    """The band files of a STAC item (``dias_catalogue.assets``), read where they are.

    ``glob`` matches band codes (``B04``, ``SCL``) and ``MTD_MSIL2A.xml`` (when the item
    links its product metadata); ``raster(band)`` gives the signed href as ``/vsicurl/`` or
    ``/vsis3/`` path; ``local`` downloads only the metadata file.
    """

    METADATA = "MTD_MSIL2A.xml"

    def __init__(self, name: str, assets: dict[str, Any], signer: Callable[[str], str],
                 s3: S3Store | None, cache: Path, boa_offset_applied: str = "trust_flag"):
        self.name, self.assets, self.signer, self.s3, self.cache = name, assets, signer, s3, cache
        self.item: dict[str, Any] = assets.get("_item") or {}
        self.boa_offset_applied = boa_offset_applied

    def _href(self, rel: str) -> str:
        if rel == self.METADATA and self.item.get("product_metadata"):
            return str(self.item["product_metadata"])
        entry = self.assets.get(rel)
        if not isinstance(entry, dict) or not entry.get("href"):
            raise FileNotFoundError(f"{self.name}: the STAC item has no {rel} asset")
        return str(entry["href"])

    def glob(self, pattern: str) -> list[str]:
        names = [k for k in self.assets if not k.startswith("_")]
        if self.item.get("product_metadata"):
            names.append(self.METADATA)
        return sorted(n for n in names if fnmatch.fnmatchcase(n, pattern))

    def raster(self, rel: str) -> RasterSource:
        href = self._href(rel)
        if href.startswith("s3://"):
            bucket = href[5:].split("/", 1)[0]
            own = self.s3 is not None and bucket == self.s3.bucket
            settings = self.s3.settings if own and self.s3 is not None else S3Settings()
            opts, session = settings.gdal(anonymous=not own)
            return RasterSource("/vsis3/" + href[5:], opts, session, local=False)
        return RasterSource("/vsicurl/" + self.signer(href), dict(REMOTE_GDAL), None, local=False)

    def local(self, rel: str) -> str:
        """Download one file of the item (only the metadata is ever needed whole).

        Raises
        ------
        FileNotFoundError
            If the item has no such file or the server answers 403/404.
        """
        dst = self.cache / Path(rel).name
        if dst.exists():
            return str(dst)
        href = self._href(rel)
        if href.startswith("s3://") and self.s3 is not None and href[5:].split("/", 1)[0] == self.s3.bucket:
            from botocore.exceptions import ClientError

            try:
                self.s3.client.download_file(self.s3.bucket, href[5:].split("/", 1)[1], str(dst))
            except ClientError as exc:
                raise FileNotFoundError(f"{href}: {exc.response.get('Error', {}).get('Code')}") from None
        else:
            dst.write_bytes(_fetch(self.signer(href)))
        return str(dst)


def _fetch(href: str) -> bytes:
    """GET a small file over http(s) (product metadata), retried on 429/5xx.

    Raises
    ------
    FileNotFoundError
        On HTTP 4xx, or when the server cannot be reached after the retries.
    """
    if not href.startswith(("http://", "https://")):
        raise FileNotFoundError(f"cannot download {href.split('?')[0]} (only http(s) metadata hrefs)")
    try:
        resp = retrying_session(4).get(href, timeout=60)
    except Exception as exc:  # noqa: BLE001 - requests.RequestException and urllib3 errors
        raise FileNotFoundError(f"{href.split('?')[0]}: {type(exc).__name__}") from None
    if resp.status_code != 200:
        raise FileNotFoundError(f"{href.split('?')[0]}: HTTP {resp.status_code}")
    return resp.content


@contextmanager
def asset_product(rel: str, assets: dict[str, Any] | None, signer: Callable[[str], str] | None,
                  s3: S3Store | None, boa_offset_applied: str = "trust_flag") -> Iterator[AssetProduct]:
    """An :class:`AssetProduct` for a ``stac:`` record, with a temporary cache for its metadata.

    Raises
    ------
    FileNotFoundError
        If the record carries no band hrefs.
    """
    from ..harvest.assets import signer_for

    if not assets or not any(not k.startswith("_") for k in assets):
        raise FileNotFoundError(f"{rel}: the catalogue record carries no band hrefs (harvest it again)")
    sign = signer or signer_for(assets.get("_item") or {})
    cache = Path(tempfile.mkdtemp(prefix="cbm-item-"))
    try:
        yield AssetProduct(rel.split("/", 1)[-1], assets, sign, s3, cache, boa_offset_applied)
    finally:
        shutil.rmtree(cache, ignore_errors=True)


def make_store(cfg: AoiConfig, s3_credentials: dict[str, str] | None = None,
               s3_endpoint: str | None = None, signer: Callable[[str], str] | None = None
               ) -> MountStore | S3Store:
    """The store configured for an AOI (credentials from the caller or environment).

    ``signer`` overrides the href signer of STAC COG items (default: ``catalogue.signer``,
    :func:`cbm_ops.harvest.assets.make_signer`).
    """
    from ..harvest.assets import make_signer

    if signer is None and cfg.catalogue.signer != "auto":
        signer = make_signer(cfg.catalogue.signer)
    boa = cfg.catalogue.boa_offset_applied
    if cfg.store.kind == "s3":
        return S3Store(cfg.store.bucket, endpoint_url=s3_endpoint, cache_dir=cfg.store.cache_dir,
                       credentials=s3_credentials, cfg=cfg.store, signer=signer, boa_offset_applied=boa)
    return MountStore(cfg.resolve(cfg.store.root) or cfg.store.root, signer=signer, boa_offset_applied=boa)
