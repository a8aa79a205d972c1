"""Export of an AOI-year for DuckDB, pandas and QGIS users: canonical signatures and parcels.

``python -m cbm_ops export --aoi A --year Y --format parquet|csv [--out-dir D]`` writes

* ``<aoi>_<year>_sigs.parquet`` (or ``.csv``): one row per parcel, CANONICAL observation
  (the rule of ``include/sql/schema_views.sql``) and band sensed in the year (UTC): pid,
  obsid, obstime, card, sensor, datatake, tile, epsg, relative_orbit, orbit_direction,
  cloudfree (S2: no SCL 3, 8, 9, 10, 11 in the parcel), band, count, mean, std, min, max,
  p25, p50, p75 (values as stored, see docs/analyst-api.md);
* ``<aoi>_parcels.parquet``: the parcels as GeoParquet (WKB geometry in the parcel CRS,
  the ``geo`` metadata with the CRS as PROJJSON, bbox and geometry types, written by
  geoarrow-pyarrow; neither the system GDAL 3.6 nor rasterio's GDAL has the Parquet
  driver), with their attributes (dates as ISO strings).

The signatures are streamed datatake by datatake (``COPY ... TO STDOUT`` CSV, parsed by
pyarrow's multithreaded CSV reader) from one REPEATABLE READ snapshot, so memory stays
bounded and the files are consistent with each other. Files are written under a temporary
name and renamed when complete: an interrupted export leaves no partial file, a rerun
replaces the files.

Read them with DuckDB (``SELECT * FROM 'demo_flanders_2018_sigs.parquet' WHERE pid = 1``),
pandas (``pd.read_parquet``) or QGIS (Layer > Add Vector Layer, GDAL >= 3.8 with the
Parquet driver, for the parcels).
"""

from __future__ import annotations

import datetime as dt
import io
import json
import logging
import os
import time
from pathlib import Path
from typing import Any

from ..config import AoiConfig
from ..db import connect, ensure_schema, q
from ..errors import ConfigError

log = logging.getLogger(__name__)

SIGS_COLUMNS = ("pid", "obsid", "obstime", "card", "sensor", "datatake", "tile", "epsg", "relative_orbit",
                "orbit_direction", "cloudfree", "band", "count", "mean", "std", "min", "max", "p25", "p50", "p75")
FORMATS = ("parquet", "csv")


def _sigs_schema():
    import pyarrow as pa

    types = {"pid": pa.int32(), "obsid": pa.int32(), "obstime": pa.timestamp("us"), "card": pa.string(),
             "sensor": pa.string(), "datatake": pa.string(), "tile": pa.string(), "epsg": pa.int32(),
             "relative_orbit": pa.int16(), "orbit_direction": pa.string(), "cloudfree": pa.bool_(),
             "band": pa.string()}
    types.update({c: pa.float32() for c in SIGS_COLUMNS[12:]})
    return pa.schema([pa.field(c, types[c]) for c in SIGS_COLUMNS])


class _CopyStream(io.RawIOBase):
    """A file object over the chunks of a psycopg COPY TO STDOUT (for pyarrow's CSV reader)."""

    def __init__(self, copy) -> None:
        self._chunks = iter(copy)
        self._buf = b""

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        while not self._buf:
            try:
                self._buf = bytes(next(self._chunks))
            except StopIteration:
                return 0
        n = min(len(b), len(self._buf))
        b[:n] = self._buf[:n]
        self._buf = self._buf[n:]
        return n


def _tmp(path: Path) -> Path:
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


def export(url: str, cfg: AoiConfig, year: int, fmt: str = "parquet", out_dir: str | Path | None = None
           ) -> dict[str, Any]:
    """Write the canonical signatures of ``year`` and the parcels of ``cfg`` to ``out_dir``.

    Parameters
    ----------
    url : str
        Database URL.
    cfg : AoiConfig
    year : int
        Calendar year of the sensing time (UTC).
    fmt : {"parquet", "csv"}
        Format of the signatures (the parcels are always GeoParquet).
    out_dir : path, optional
        Default ``maintenance.export_dir`` of the AOI, else ``export/`` in the project.

    Returns
    -------
    dict
        ``sigs`` and ``parcels`` (file paths), ``rows`` (signature rows), ``datatakes``,
        ``parcel_count`` and ``seconds``.

    Raises
    ------
    ValueError
        For an unknown format or a year outside 2014..2100.
    psycopg.Error
        If the database cannot be read (nothing is left behind).
    """
    if fmt not in FORMATS:
        raise ValueError(f"format {fmt!r}: use one of {', '.join(FORMATS)}")
    if not 2014 <= int(year) <= 2100:
        raise ValueError(f"year {year!r} is not between 2014 and 2100")
    t0 = time.perf_counter()
    out = Path(out_dir) if out_dir else (cfg.resolve(cfg.maintenance.export_dir) or cfg.resolve("export"))
    if out is None:           # cfg.resolve of a relative path is never None; not under python -O either
        raise ConfigError(f"AOI {cfg.name}: no export directory (maintenance.export_dir or --out-dir)")
    out.mkdir(parents=True, exist_ok=True)
    sigs_path = out / f"{cfg.name}_{year}_sigs.{fmt}"
    parcels_path = out / f"{cfg.name}_parcels.parquet"
    tmp_sigs, tmp_parcels = _tmp(sigs_path), _tmp(parcels_path)
    import psycopg

    ensure_schema(url, cfg.schema, pid_indexes=cfg.pid_indexes)     # the views (no-op when current)
    try:
        with connect(url, application_name="cbm-airflow export") as conn:
            conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ   # one snapshot for both files
            conn.execute(q("export_session"))
            start, end = dt.datetime(int(year), 1, 1), dt.datetime(int(year) + 1, 1, 1)
            datatakes = conn.execute(q("export_datatakes", schema=cfg.schema), {"start": start, "end": end}).fetchall()
            rows = _write_sigs(conn, cfg, [d for d, _ in datatakes], fmt, tmp_sigs)
            n_parcels = _write_parcels(conn, cfg, tmp_parcels)
        os.replace(tmp_sigs, sigs_path)
        os.replace(tmp_parcels, parcels_path)
    finally:
        for p in (tmp_sigs, tmp_parcels):
            p.unlink(missing_ok=True)
    res = {"aoi": cfg.name, "year": int(year), "format": fmt, "sigs": str(sigs_path), "parcels": str(parcels_path),
           "rows": rows, "datatakes": len(datatakes), "parcel_count": n_parcels,
           "seconds": round(time.perf_counter() - t0, 2)}
    log.info("export %s %s: %d signature rows of %d datatakes -> %s; %d parcels -> %s (%.1f s)", cfg.name, year,
             rows, len(datatakes), sigs_path, n_parcels, parcels_path, res["seconds"])
    return res


def _write_sigs(conn, cfg: AoiConfig, datatakes: list[str], fmt: str, path: Path) -> int:
    import pyarrow as pa
    import pyarrow.csv as pcsv
    import pyarrow.parquet as pq

    schema = _sigs_schema()
    stmt = q("export_sigs", schema=cfg.schema)
    rows = 0
    if fmt == "csv":
        with open(path, "wb") as f:
            f.write((",".join(SIGS_COLUMNS) + "\n").encode())
            with conn.cursor() as cur:
                for datatake in datatakes:
                    with cur.copy(stmt, {"datatake": datatake}) as copy:
                        for chunk in copy:
                            f.write(chunk)
                            rows += bytes(chunk).count(b"\n")
        return rows
    read = pcsv.ReadOptions(column_names=list(SIGS_COLUMNS), block_size=8 << 20)
    convert = pcsv.ConvertOptions(column_types=schema, true_values=["true"], false_values=["false"],
                                  strings_can_be_null=True, null_values=[""])
    with pq.ParquetWriter(path, schema, compression="zstd") as writer, conn.cursor() as cur:
        for datatake in datatakes:
            with cur.copy(stmt, {"datatake": datatake}) as copy:
                stream = io.BufferedReader(_CopyStream(copy), buffer_size=1 << 20)
                try:
                    reader = pcsv.open_csv(stream, read_options=read, convert_options=convert)
                except pa.ArrowInvalid as exc:      # no rows for this datatake (e.g. only hists)
                    if "Empty CSV file" in str(exc):
                        continue
                    raise
                batches = list(reader)
                table = pa.Table.from_batches(batches, schema=schema) if batches else None
            if table is not None and table.num_rows:
                writer.write_table(table)
                rows += table.num_rows
    return rows


def _write_parcels(conn, cfg: AoiConfig, path: Path) -> int:
    """GeoParquet of the parcel table (attributes from to_jsonb, WKB in the parcel CRS)."""
    import geoarrow.pyarrow as ga
    import geoarrow.pyarrow.io as gio
    import pyarrow as pa
    from pyproj import CRS

    pids, attrs, wkbs, srids = [], [], [], set()
    with conn.cursor(name="cbm_export_parcels") as cur:      # server-side: bounded memory per fetch
        cur.itersize = 20_000
        cur.execute(q("export_parcels", schema=cfg.schema, parcels=cfg.parcels.table))
        for pid, values, wkb, srid in cur:
            pids.append(pid)
            attrs.append(values)
            wkbs.append(bytes(wkb) if wkb is not None else None)
            srids.add(srid)
    srids.discard(None)
    if len(srids) > 1:
        raise ValueError(f"{cfg.schema}.{cfg.parcels.table} mixes SRIDs {sorted(srids)}")
    order = [c.name for c in conn.execute(q("api_parcel_columns", schema=cfg.schema, parcels=cfg.parcels.table)
                                          ).description]                  # the table's column order
    present = set(k for a in attrs for k in a)
    names = [k for k in order if k in present and k not in ("ogc_fid", "wkb_geometry")]
    columns: dict[str, Any] = {"pid": pa.array(pids, pa.int32())}
    for name in names:
        values = [a.get(name) for a in attrs]
        col = f"attr_{name}" if name in ("pid", "geometry") else name     # the file's own pid, geometry
        try:
            columns[col] = pa.array(values)
        except (pa.ArrowInvalid, pa.ArrowTypeError):       # mixed JSON types: keep them as JSON text
            columns[col] = pa.array([None if v is None else json.dumps(v) for v in values], pa.string())
    crs = CRS.from_epsg(srids.pop()).to_json() if srids else None
    geom_type = ga.wkb().with_crs(crs) if crs else ga.wkb()
    columns["geometry"] = geom_type.wrap_array(pa.array(wkbs, pa.binary()))
    gio.write_geoparquet_table(pa.table(columns), str(path), write_bbox=True, write_geometry_types=True,
                               compression="zstd")
    return len(pids)
