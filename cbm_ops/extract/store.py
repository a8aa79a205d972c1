"""Where scene files come from: a mounted directory or S3, behind one interface.

* :class:`MountStore` reads products in place under a root such as ``/eodata`` (the
  CREODIAS mount, or the bundled sample in ``include/sample/eodata``).
* :class:`S3Store` lists and downloads the files a stage needs with boto3 into a
  per-scene cache directory, removed when the scene is done, also on failure.

A product's location is its ``product_identifier`` (``/eodata/Sentinel-2/...``) with the
``/eodata/`` prefix taken as the store root, or else the reference layout
(:func:`cbm_ops.naming.store_path`).

S3 endpoint, bucket and credentials come from the Airflow connection (``aws`` type:
login = access key, password = secret key, extra ``endpoint_url``), passed in by the DAG,
or from the environment: ``CBM_S3_ENDPOINT_URL`` and boto3's own ``AWS_ACCESS_KEY_ID`` /
``AWS_SECRET_ACCESS_KEY``. They are never logged.
"""

from __future__ import annotations

import fnmatch
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol

from .. import naming
from ..config import AoiConfig
from ..errors import StorePathError

log = logging.getLogger(__name__)


class ProductFiles(Protocol):
    """The files of one product, relative to the product directory."""

    name: str

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

    def glob(self, pattern: str) -> list[str]:
        return sorted(str(p.relative_to(self.root)) for p in self.root.glob(pattern) if p.is_file())

    def local(self, rel: str) -> str:
        p = self.root / rel
        if not p.is_file():
            raise FileNotFoundError(f"{p} does not exist")
        return str(p)


class MountStore:
    """Products read in place from a mounted directory tree."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
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
    def product(self, rel: str) -> Iterator[_MountProduct]:
        path = self.root / rel
        if not path.exists():
            raise FileNotFoundError(f"product {path} not found in the store")
        yield _MountProduct(path, Path(rel).name)


class _S3Product:
    def __init__(self, client: Any, bucket: str, prefix: str, cache: Path, name: str):
        self.client, self.bucket, self.prefix, self.cache, self.name = client, bucket, prefix, cache, name
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
                self.client.download_file(self.bucket, f"{self.prefix}/{rel}", str(dst))
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                    raise FileNotFoundError(f"s3://{self.bucket}/{self.prefix}/{rel} does not exist") from None
                raise
        return str(dst)


class S3Store:
    """Products downloaded from S3 into a per-scene cache (removed afterwards)."""

    def __init__(self, bucket: str, *, endpoint_url: str | None = None, cache_dir: str | None = None,
                 credentials: dict[str, str] | None = None):
        import boto3
        from botocore.config import Config

        self.bucket = bucket
        self.cache_dir = cache_dir
        self.client = boto3.client(
            "s3", endpoint_url=endpoint_url or os.environ.get("CBM_S3_ENDPOINT_URL"),
            config=Config(retries={"max_attempts": 8, "mode": "adaptive"}),
            **(credentials or {}))

    def available(self) -> bool:
        """Always True: boto3 retries an unreachable endpoint itself (adaptive mode)."""
        return True

    @contextmanager
    def product(self, rel: str) -> Iterator[_S3Product]:
        if self.cache_dir:
            Path(self.cache_dir).mkdir(parents=True, exist_ok=True)
        cache = Path(tempfile.mkdtemp(prefix="cbm-scene-", dir=self.cache_dir))
        try:
            prod = _S3Product(self.client, self.bucket, rel.rstrip("/"), cache, Path(rel).name)
            if not prod._list():
                raise FileNotFoundError(f"product s3://{self.bucket}/{rel} not found in the store")
            yield prod
        finally:
            shutil.rmtree(cache, ignore_errors=True)


def make_store(cfg: AoiConfig, s3_credentials: dict[str, str] | None = None,
               s3_endpoint: str | None = None) -> MountStore | S3Store:
    """The store configured for an AOI (credentials from the caller or environment)."""
    if cfg.store.kind == "s3":
        return S3Store(cfg.store.bucket, endpoint_url=s3_endpoint, cache_dir=cfg.store.cache_dir,
                       credentials=s3_credentials)
    return MountStore(cfg.resolve(cfg.store.root) or cfg.store.root)
