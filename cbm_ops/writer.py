"""PostGIS writes: one scene stage is one transaction.

:func:`write_stage` deletes the scene's earlier rows for the stage's bands, bulk-loads the
new rows with COPY (binary for sigs, text for the hists JSON) and completes the scene's
stage in the queue, all in one transaction. A crash at any point leaves either the old
complete result or the new one; the keys on sigs (obsid, band, pid) and hists (obsid, pid)
make duplicates impossible.

The binary COPY buffer is built with numpy (PostgreSQL "binary copy format": header,
per tuple an int16 field count then int32 length + big-endian value per field, trailer
-1), so no Python loop runs over rows.
"""

from __future__ import annotations

import json

import numpy as np
import psycopg

from . import queue
from .config import AoiConfig
from .db import q
from .kernels import STAT_NAMES

PGCOPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + b"\x00\x00\x00\x00" + b"\x00\x00\x00\x00"
PGCOPY_TRAILER = b"\xff\xff"

_SIGS_DTYPE = np.dtype(
    [("nfields", ">i2"), ("l_pid", ">i4"), ("pid", ">i4"), ("l_obsid", ">i4"), ("obsid", ">i4"),
     ("l_band", ">i4"), ("band", "S3")]
    + [f for name in STAT_NAMES for f in ((f"l_{name}", ">i4"), (name, ">f4"))])


def sigs_rows(pids: np.ndarray, obsid: int, band: str, stats: np.ndarray) -> np.ndarray:
    """Binary COPY tuples for the parcels with valid pixels.

    Parameters
    ----------
    pids : int ndarray, shape (P,)
    obsid : int
    band : str
        Three-character band code (``B04``, ``VVb``).
    stats : float64 ndarray, shape (P, 8)
        Output of :func:`cbm_ops.kernels.parcel_stats` (offset applied).

    Returns
    -------
    structured ndarray, shape (N,)
        One record per parcel with ``count > 0``; ``.tobytes()`` is the COPY payload.
    """
    if len(band.encode()) != 3:
        raise ValueError(f"band code {band!r} must be 3 characters (sigs.band is char(3))")
    keep = stats[:, 0] > 0
    n = int(keep.sum())
    rows = np.empty(n, _SIGS_DTYPE)
    rows["nfields"] = 3 + len(STAT_NAMES)
    rows["l_pid"] = 4
    rows["l_obsid"] = 4
    rows["l_band"] = 3
    rows["pid"] = pids[keep]
    rows["obsid"] = obsid
    rows["band"] = band.encode()
    sel = stats[keep]
    for k, name in enumerate(STAT_NAMES):
        rows[f"l_{name}"] = 4
        rows[name] = sel[:, k]
    return rows


def sigs_payload(per_band: list[np.ndarray]) -> bytes:
    """Binary COPY payload of a scene's sigs rows, ordered by pid then band.

    Key order (obsid, pid, band) makes the primary-key inserts sequential (measured: the
    fastest order for the bulk load).
    """
    parts = [r for r in per_band if r.size]
    if not parts:
        return PGCOPY_HEADER + PGCOPY_TRAILER
    # dtype given explicitly: numpy 2 would otherwise convert the big-endian fields to native
    rows = np.concatenate(parts, dtype=_SIGS_DTYPE)
    band_no = np.concatenate([np.full(r.size, i, np.int64) for i, r in enumerate(parts)])
    order = np.argsort(rows["pid"].astype(np.int64) * len(parts) + band_no, kind="stable")
    return PGCOPY_HEADER + rows[order].tobytes() + PGCOPY_TRAILER


def write_stage(conn: psycopg.Connection, cfg: AoiConfig, claim: queue.Claim, owner: str, *,
                sigs: list[np.ndarray] | None = None, hists: tuple[bytes, int] | None = None,
                bands: list[str], offsets: dict[str, int] | None = None, parcels: int,
                seconds: float) -> int:
    """Replace a scene stage's rows and complete it, in ``conn``'s transaction.

    Parameters
    ----------
    sigs : list of structured ndarrays
        :func:`sigs_rows` per band (stats stages).
    hists : (bytes, int)
        COPY text and row count from :func:`cbm_ops.kernels.hist_copy_text` (SCL stage).
    bands : list of str
        Band codes the stage writes (their earlier rows are deleted first).
    offsets : dict, optional
        S2 BOA_ADD_OFFSET applied per band, recorded in ``dias_catalogue.boa_add_offset``.
    parcels : int
        Parcels with data.

    Returns
    -------
    int
        Rows written.

    Raises
    ------
    queue.LeaseLost
        The scene was claimed by another worker; the caller's transaction must roll back.
    """
    schema = cfg.schema
    rows = 0
    if hists is not None:
        conn.execute(q("hists_delete", schema=schema), {"obsids": [claim.obsid]})
        text, rows = hists
        if rows:
            with conn.cursor().copy(q("hists_copy", schema=schema)) as cp:
                cp.write(bytes(text))
    else:
        conn.execute(q("sigs_delete", schema=schema), {"obsids": [claim.obsid], "bands": bands})
        payload = sigs_payload(sigs or [])
        rows = (len(payload) - len(PGCOPY_HEADER) - len(PGCOPY_TRAILER)) // _SIGS_DTYPE.itemsize
        if rows:
            with conn.cursor().copy(q("sigs_copy", schema=schema)) as cp:
                cp.write(payload)
    if offsets:
        conn.execute(q("catalogue_record_offsets", schema=schema),
                     {"obsid": claim.obsid, "offsets": json.dumps(offsets)})
    queue.complete(conn, cfg, claim, owner, status=queue.EXTRACTED if rows else queue.NO_PARCELS,
                   parcels=parcels, rows=rows, seconds=round(seconds, 3))
    return rows
