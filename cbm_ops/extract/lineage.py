"""Lineage of extracted rows: which code, parameters and product produced a scene stage.

Recorded per completed stage in ``scene_stages.lineage`` (JSON), next to the rows it
describes, and shown by the analyst API. Keys:

``package_version``
    cbm-airflow version (package metadata).
``git_commit``
    Commit of the source checkout (``git rev-parse HEAD`` in the project directory), or
    ``CBM_GIT_COMMIT`` (set at image build time), else null.
``stage``, ``bands``, ``nodata``, ``all_touched``, ``boa_add_offset``
    Extraction parameters: stored band codes, the nodata value used per band (null: only
    NaN masked), the rasterization rule, the S2 offset added per band (DN).
``index_version``
    Parcel index used: rasterizer, parcel-set version (md5 prefix) and the stored grid id
    or ``scene`` (rasterized for the scene).
``processing_baseline``, ``catalogue_source``, ``product``
    Product baseline (S2 ``N0510`` -> ``05.10``), the catalogue source that harvested it,
    the product path in the store.
``extracted_at``
    UTC time of the extraction.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import subprocess
from functools import cache
from typing import Any

from .. import __version__
from ..config import PROJECT_DIR

RASTERIZER = "scanline-1"   # bumped when the parcel-pixel membership code changes


@cache
def git_commit() -> str | None:
    """Commit of the running source checkout, ``CBM_GIT_COMMIT``, or None."""
    if os.environ.get("CBM_GIT_COMMIT"):
        return os.environ["CBM_GIT_COMMIT"]
    if not (PROJECT_DIR / ".git").exists():
        return None
    git = shutil.which("git")
    if git is None:
        return None
    try:
        out = subprocess.run([git, "-C", str(PROJECT_DIR), "rev-parse", "HEAD"], capture_output=True,
                             text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def stage_lineage(*, stage: str, bands: list[str], nodata: dict[str, float | None], all_touched: bool,
                  offsets: dict[str, int] | None, index_version: str, processing_baseline: str | None,
                  catalogue_source: str | None, product: str) -> dict[str, Any]:
    """The lineage record of one extracted scene stage (see the module docstring)."""
    return {
        "package_version": __version__, "git_commit": git_commit(), "stage": stage, "bands": bands,
        "nodata": nodata, "all_touched": all_touched, "boa_add_offset": offsets or {},
        "index_version": index_version, "processing_baseline": processing_baseline,
        "catalogue_source": catalogue_source, "product": product,
        "extracted_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }
