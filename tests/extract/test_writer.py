"""Binary COPY payload of sigs: layout, masks and values through a real COPY."""

from __future__ import annotations

import datetime as dt

import numpy as np
import psycopg
import pytest

from cbm_ops.config import AoiConfig
from cbm_ops.db import ensure_schema
from cbm_ops.db.partitions import ensure_partition
from cbm_ops.extract import writer


def test_payload_rows_masks_and_values_via_copy(db_url, db_schema):
    ensure_schema(db_url, db_schema)
    cfg = AoiConfig(name="w", schema=db_schema, start_date=dt.date(2023, 1, 1))
    part = ensure_partition(db_url, cfg, 42)
    rng = np.random.default_rng(4)
    pids = np.array([7, 3, 11, 5], np.int32)
    st_a = rng.random((4, 8)) * 100
    st_b = rng.random((4, 8)) * 100
    st_a[:, 0] = [4, 0, 2, 9]          # parcel 3 has no pixel in band A
    st_b[:, 0] = [4, 6, 0, 0]          # parcels 11, 5 none in band B
    payload, n = writer.sigs_payload(pids, 42, ["B04", "VVb"], [st_a, st_b])
    assert n == 5 and len(payload) == n * writer._SIGS_DTYPE.itemsize
    with psycopg.connect(db_url) as c:
        # chunk=2: streamed in two parts, the second with only one row per parcel
        assert writer.copy_sigs(c, db_schema, part.sigs, pids, 42, ["B04", "VVb"], [st_a, st_b], chunk=2) == 5
        got = c.execute(f'SELECT pid, obsid, band, count, mean, p75 FROM "{db_schema}".sigs').fetchall()
    # written in key order: pid-major in the index's parcel order, band order inside
    assert [(r[0], r[2]) for r in got] == [(7, "B04"), (7, "VVb"), (3, "VVb"), (11, "B04"), (5, "B04")]
    ref = {("B04", 7): st_a[0], ("VVb", 7): st_b[0], ("VVb", 3): st_b[1], ("B04", 11): st_a[2], ("B04", 5): st_a[3]}
    for pid, obsid, band, count, mean, p75 in got:
        e = ref[(band, pid)]
        assert obsid == 42 and count == e[0]
        assert mean == pytest.approx(e[1], rel=1e-6) and p75 == pytest.approx(e[7], rel=1e-6)


def test_band_codes_must_fit_char3():
    with pytest.raises(ValueError, match="3 characters"):
        writer.sigs_payload(np.arange(2), 1, ["B8"], [np.ones((2, 8))])
    payload, n = writer.sigs_payload(np.arange(2), 1, [], [])
    assert n == 0 and len(payload) == 0
