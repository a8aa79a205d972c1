"""Parcel import into PostGIS (real LPIS files) and the AOI row."""

from __future__ import annotations

import datetime as dt
import json

import psycopg
import pytest
from conftest import shared

from cbm_ops.config import AoiConfig
from cbm_ops.parcels import ParcelImportError, import_parcels
from cbm_ops.partitions import ensure_partition

MECHELEN = ("befl-mechelen-markers", "original", "inputdata", "Prc_BEFL_2023_2023-07-24.gpkg")
FLANDERS = ("worldcereal-cib-flanders-patches", "derived", "parcels_epsg32631.gpkg")


def cfg_for(schema: str, **kw) -> AoiConfig:
    return AoiConfig(name="p", schema=schema, start_date=dt.date(2023, 1, 1), **kw)


def one(url, sql, *args):
    with psycopg.connect(url) as c:
        return c.execute(sql, args).fetchone()


def test_import_real_lpis_keeps_srid_ids_and_sets_aoi(db_url, db_schema):
    cfg = cfg_for(db_schema)
    rep = import_parcels(db_url, cfg, shared(*MECHELEN))
    assert (rep.parcels, rep.srid, rep.repaired, rep.empty_ids, rep.unchanged) == (10, 31370, 0, [], False)
    s = db_schema
    from osgeo import ogr
    src = ogr.Open(str(shared(*MECHELEN)))
    fids = sorted(f.GetFID() for f in src.GetLayer(0))
    with psycopg.connect(db_url) as c:       # source FIDs kept as ogc_fid (stable pids)
        assert [r[0] for r in c.execute(f'SELECT ogc_fid FROM "{s}".parcels ORDER BY 1')] == fids
    assert one(db_url, f"SELECT Find_SRID('{s}', 'parcels', 'wkb_geometry')")[0] == 31370
    # The AOI (EPSG:4326, from the densified extent) covers every parcel.
    assert one(db_url, f'''SELECT bool_and(ST_Covers(a.wkb_geometry, ST_Transform(p.wkb_geometry, 4326)))
                           FROM "{s}".parcels p, "{s}".aois a''')[0] is True
    lon, lat = one(db_url, f'SELECT ST_X(ST_Centroid(wkb_geometry)), ST_Y(ST_Centroid(wkb_geometry)) FROM "{s}".aois')
    assert 4.531 < lon < 4.539 and 51.002 < lat < 51.007        # Mechelen (SOURCE.md bounds)
    # Same file again: nothing changes.
    again = import_parcels(db_url, cfg, shared(*MECHELEN))
    assert again.unchanged and again.version == rep.version


def test_import_named_layer_of_polygonised_regions(db_url, db_schema):
    cfg = cfg_for(db_schema, parcels={"table": "regions", "layer": "lpis_raster_polygonised"})
    rep = import_parcels(db_url, cfg, shared(*FLANDERS))
    assert rep.parcels == 55 and rep.srid == 32631
    area = one(db_url, f'SELECT sum(ST_Area(wkb_geometry)) = sum(area_m2) FROM "{db_schema}".regions')
    assert area == (True,)


def test_invalid_geometries_repaired_and_empty_reported(db_url, db_schema, tmp_path):
    # SYNTHETIC parcels: a bow-tie (self-intersecting) and a zero-area sliver.
    fc = {"type": "FeatureCollection",
          "crs": {"type": "name", "properties": {"name": "urn:ogc:def:crs:EPSG::32631"}},
          "features": [
              {"type": "Feature", "properties": {"name": "ok"},
               "geometry": {"type": "Polygon", "coordinates": [[[0, 0], [100, 0], [100, 100], [0, 100], [0, 0]]]}},
              {"type": "Feature", "properties": {"name": "bowtie"},
               "geometry": {"type": "Polygon", "coordinates": [[[0, 0], [100, 100], [100, 0], [0, 100], [0, 0]]]}},
              {"type": "Feature", "properties": {"name": "sliver"},
               "geometry": {"type": "Polygon", "coordinates": [[[0, 0], [100, 0], [50, 0], [0, 0]]]}}]}
    path = tmp_path / "bad.geojson"
    path.write_text(json.dumps(fc))
    rep = import_parcels(db_url, cfg_for(db_schema), path)
    assert rep.parcels == 3 and rep.repaired == 2
    names = dict(psycopg.connect(db_url).execute(
        f'SELECT name, ST_Area(wkb_geometry) FROM "{db_schema}".parcels').fetchall())
    assert names["ok"] == 10000 and names["bowtie"] == pytest.approx(5000) and names["sliver"] == 0
    sliver_id = one(db_url, f"SELECT ogc_fid FROM \"{db_schema}\".parcels WHERE name = 'sliver'")[0]
    assert rep.empty_ids == [sliver_id]
    assert one(db_url, f'SELECT bool_and(ST_IsValid(wkb_geometry)) FROM "{db_schema}".parcels')[0]


def test_replacing_a_parcel_set_with_results_needs_replace(db_url, db_schema):
    cfg = cfg_for(db_schema)
    import_parcels(db_url, cfg, shared(*MECHELEN))
    ensure_partition(db_url, cfg, 1)
    with psycopg.connect(db_url) as c:
        c.execute(f'INSERT INTO "{db_schema}".sigs (pid, obsid, band, count) VALUES (1, 1, %s, 4)', ("B04",))
    gpkg = shared("parcels-lpis", "flanders-geofileops", "polygon-parcel.gpkg")
    with pytest.raises(ParcelImportError, match="replace"):
        import_parcels(db_url, cfg, gpkg)
    assert one(db_url, f'SELECT count(*) FROM "{db_schema}".parcels')[0] == 10   # old set intact
    rep = import_parcels(db_url, cfg, gpkg, replace=True)
    assert one(db_url, f'SELECT count(*) FROM "{db_schema}".parcels')[0] == rep.parcels != 10


def test_missing_file_and_non_polygon_layer(db_url, db_schema, tmp_path):
    with pytest.raises(ParcelImportError, match="not found"):
        import_parcels(db_url, cfg_for(db_schema), tmp_path / "nope.gpkg")
    pts = tmp_path / "points.geojson"
    pts.write_text(json.dumps({"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {}, "geometry": {"type": "Point", "coordinates": [4, 51]}}]}))
    with pytest.raises(ParcelImportError, match="not polygonal"):
        import_parcels(db_url, cfg_for(db_schema), pts)


def test_gdal_connection_string_escapes_the_password():
    from urllib.parse import quote

    from psycopg.conninfo import conninfo_to_dict

    from cbm_ops.parcels import _pg_conninfo

    pw = "ab'c d\\SECRET"
    info = _pg_conninfo(f"postgresql://cbm:{quote(pw, safe='')}@db.example:5433/cbm")
    assert conninfo_to_dict(info) == {"user": "cbm", "password": pw, "host": "db.example", "port": "5433",
                                      "dbname": "cbm"}


def test_empty_parcel_file_is_a_clear_error(db_url, db_schema, tmp_path):
    empty = tmp_path / "empty.geojson"
    empty.write_text(json.dumps({"type": "FeatureCollection", "crs": {"type": "name", "properties": {
        "name": "urn:ogc:def:crs:EPSG::32631"}}, "features": []}))
    with pytest.raises(ParcelImportError, match="no parcels"):
        import_parcels(db_url, cfg_for(db_schema), empty)
