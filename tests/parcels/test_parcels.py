"""Parcel import into PostGIS (real LPIS files) and the AOI row."""

from __future__ import annotations

import datetime as dt
import json

import psycopg
import pytest
from conftest import shared

from cbm_ops.config import AoiConfig
from cbm_ops.db.partitions import ensure_partition
from cbm_ops.parcels import ParcelImportError, import_parcels

MECHELEN = ("befl-mechelen-markers", "original", "inputdata", "Prc_BEFL_2023_2023-07-24.gpkg")
FLANDERS = ("worldcereal-cib-flanders-patches", "derived", "parcels_epsg32631.gpkg")


def cfg_for(schema: str, **kw) -> AoiConfig:
    return AoiConfig(name="p", schema=schema, start_date=dt.date(2023, 1, 1), **kw)


E0, N0 = 500000.0, 5640000.0                     # a field in West Flanders, EPSG:32631


def utm(ring):
    return [[[E0 + x, N0 + y] for x, y in ring]]


def box(x0, y0, x1, y1):
    return utm([[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]])


def geojson(tmp_path, features, epsg=32631, name="parcels.geojson"):
    path = tmp_path / name
    path.write_text(json.dumps({"type": "FeatureCollection",
                                "crs": {"type": "name", "properties": {"name": f"urn:ogc:def:crs:EPSG::{epsg}"}},
                                "features": features}))
    return path


def gpkg(tmp_path, features, epsg, name="parcels.gpkg"):
    """A GeoPackage whose FIDs are the features' "id" (stable parcel ids, as LPIS files have)."""
    from osgeo import ogr, osr

    srs = osr.SpatialReference()
    srs.ImportFromEPSG(epsg)
    path = tmp_path / name
    ds = ogr.GetDriverByName("GPKG").CreateDataSource(str(path))
    lyr = ds.CreateLayer("parcels", srs, ogr.wkbMultiPolygon, ["FID=fid"])
    texts = sorted({k for f in features for k, v in f["properties"].items() if isinstance(v, str)})
    for k in texts:                                       # string attributes (e.g. a crop declaration)
        lyr.CreateField(ogr.FieldDefn(k, ogr.OFTString))
    for f in features:
        feat = ogr.Feature(lyr.GetLayerDefn())
        feat.SetFID(int(f["id"]))
        for k in texts:
            if k in f["properties"]:
                feat.SetField(k, f["properties"][k])
        feat.SetGeometry(ogr.ForceToMultiPolygon(ogr.CreateGeometryFromJson(json.dumps(f["geometry"]))))
        assert lyr.CreateFeature(feat) == 0
    del lyr, ds
    return path


def feature(geom_type, coords, **props):
    return {"type": "Feature", "properties": props, "geometry": {"type": geom_type, "coordinates": coords}}


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
               "geometry": {"type": "Polygon", "coordinates": box(0, 0, 100, 100)}},
              {"type": "Feature", "properties": {"name": "bowtie"},
               "geometry": {"type": "Polygon", "coordinates": utm([[0, 0], [100, 100], [100, 0], [0, 100], [0, 0]])}},
              {"type": "Feature", "properties": {"name": "sliver"},
               "geometry": {"type": "Polygon", "coordinates": utm([[0, 0], [100, 0], [50, 0], [0, 0]])}}]}
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

    from cbm_ops.parcels.importer import _pg_conninfo

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


def test_non_polygonal_features_are_excluded_and_reported(db_url, db_schema, tmp_path):
    """SYNTHETIC mixed layer: polygons, a point, a line, a collection of a polygon and a line."""
    path = geojson(tmp_path, [
        feature("Polygon", box(0, 0, 100, 100), name="a"),
        feature("Polygon", box(200, 0, 300, 100), name="b"),
        feature("Point", [E0 + 50, N0 + 500], name="point"),
        feature("LineString", [[E0, N0 + 600], [E0 + 300, N0 + 600]], name="line"),
        {"type": "Feature", "properties": {"name": "collection"}, "geometry": {"type": "GeometryCollection",
         "geometries": [{"type": "Polygon", "coordinates": box(400, 0, 500, 100)},
                        {"type": "LineString", "coordinates": [[E0 + 400, N0], [E0 + 450, N0 + 300]]}]}}])
    rep = import_parcels(db_url, cfg_for(db_schema), path)
    assert rep.parcels == 3
    with psycopg.connect(db_url) as c:
        kept = dict(c.execute(f'SELECT name, ST_Area(wkb_geometry) FROM "{db_schema}".parcels').fetchall())
        ids = dict(c.execute(f"SELECT ogc_fid, 1 FROM \"{db_schema}\".parcels").fetchall())
        typ = c.execute(f"SELECT type FROM geometry_columns WHERE f_table_schema = '{db_schema}'").fetchone()[0]
    assert kept == {"a": 10000, "b": 10000, "collection": 10000} and typ == "MULTIPOLYGON"
    # (OGR promotes the layer's geometries to multi-geometries on import)
    assert sorted(e["reason"] for e in rep.excluded) == ["not a polygon (MULTILINESTRING)",
                                                         "not a polygon (MULTIPOINT)"]
    assert not {e["id"] for e in rep.excluded} & set(ids)


def mechelen_features():
    from osgeo import ogr

    src = ogr.Open(str(shared(*MECHELEN)))
    lyr = src.GetLayer(0)
    out = [{"type": "Feature", "id": f.GetFID(), "properties": {"fid": f.GetFID()},
            "geometry": json.loads(f.GetGeometryRef().ExportToJson())} for f in lyr]
    del lyr, src
    return out


def test_a_parcel_in_another_crs_is_left_out_of_the_set_and_its_outline(db_url, db_schema, tmp_path):
    """REAL Flanders parcels (EPSG:31370) plus one of them written in lon/lat degrees."""
    feats = mechelen_features()
    lonlat = {"type": "Feature", "id": 99, "properties": {"fid": 99}, "geometry": {"type": "Polygon", "coordinates": [[
        [4.535, 51.004], [4.536, 51.004], [4.536, 51.005], [4.535, 51.005], [4.535, 51.004]]]}}
    path = geojson(tmp_path, [*feats, lonlat], epsg=31370)
    rep = import_parcels(db_url, cfg_for(db_schema), path)
    assert rep.parcels == 10 and len(rep.excluded) == 1
    assert rep.excluded[0]["reason"].startswith("far outside the parcel set")
    km2 = one(db_url, f'SELECT ST_Area(wkb_geometry::geography) / 1e6 FROM "{db_schema}".aois')[0]
    assert km2 < 5                                       # the Mechelen fields, not half of Belgium


def test_a_parcel_in_utm_metres_in_a_lambert_file(db_url, db_schema, tmp_path):
    """REAL Flanders parcels (EPSG:31370) plus one in UTM 31N metres (5,400 km north): left
    out by default; with the outlier test off the set lies outside Lambert 72's area of use."""
    utm_parcel = {"type": "Feature", "id": 99, "properties": {"fid": 99}, "geometry": {
        "type": "Polygon", "coordinates": box(0, 0, 100, 100)}}
    path = gpkg(tmp_path, [*mechelen_features(), utm_parcel], epsg=31370)
    with pytest.raises(ParcelImportError, match="outside the area of use of their declared CRS EPSG:31370"):
        import_parcels(db_url, cfg_for(db_schema, parcels={"exclude_outliers": False}), path)
    rep = import_parcels(db_url, cfg_for(db_schema), path)
    assert rep.parcels == 10 and [e["id"] for e in rep.excluded] == [99]
    assert "far outside the parcel set" in rep.excluded[0]["reason"]


def test_an_implausible_outline_is_refused(db_url, db_schema, tmp_path):
    """SYNTHETIC fields in EPSG:3035 (LAEA Europe, inside its area of use): two in Flanders, one
    in Finland: 1.6 million km2 for 3 parcels."""
    def sq(x, y):
        return [[[x, y], [x + 100, y], [x + 100, y + 100], [x, y + 100], [x, y]]]
    path = geojson(tmp_path, [feature("Polygon", sq(3930000, 3100000)), feature("Polygon", sq(3931000, 3100500)),
                              feature("Polygon", sq(5100000, 4500000))], epsg=3035)
    with pytest.raises(ParcelImportError, match="km2 for 3 parcels.*implausible"):
        import_parcels(db_url, cfg_for(db_schema), path)


@pytest.mark.parametrize("case", ["lambert-as-wgs84", "utm-as-lambert"])
def test_a_wrong_declared_crs_is_refused(db_url, db_schema, tmp_path, case):
    if case == "lambert-as-wgs84":                       # REAL parcels in metres declared as degrees
        path = geojson(tmp_path, mechelen_features(), epsg=4326)
    else:                                                # REAL UTM parcels declared as Belgian Lambert 72
        from osgeo import ogr
        ds = ogr.Open(str(shared(*FLANDERS)))            # keep the dataset alive while reading its layer
        lyr = ds.GetLayerByName("lpis_raster_polygonised")
        path = geojson(tmp_path, [{"type": "Feature", "properties": {}, "geometry": json.loads(
            f.GetGeometryRef().ExportToJson())} for f in lyr], epsg=31370)
        del lyr, ds
    with pytest.raises(ParcelImportError, match="declared CRS"):
        import_parcels(db_url, cfg_for(db_schema), path)
    assert one(db_url, "SELECT to_regclass(%s) IS NULL", f'"{db_schema}".parcels')[0]   # nothing imported


def test_parcel_table_may_not_be_a_table_of_the_pipeline():
    from pydantic import ValidationError

    for name in ("sigs", "hists", "dias_catalogue", "scene_stages", "sigs_o000000500", "result_partitions"):
        with pytest.raises(ValidationError, match="table of cbm-airflow"):
            cfg_for("x", parcels={"table": name})
    assert cfg_for("x", parcels={"table": "lpis_2024"}).parcels.table == "lpis_2024"


def test_replace_clears_the_results_of_changed_parcels_only(db_url, db_schema, tmp_path):
    cfg = cfg_for(db_schema)
    feats = mechelen_features()
    import_parcels(db_url, cfg, gpkg(tmp_path, feats, epsg=31370, name="v1.gpkg"))
    ensure_partition(db_url, cfg, 1)
    with psycopg.connect(db_url) as c:
        pids = [r[0] for r in c.execute(f'SELECT ogc_fid FROM "{db_schema}".parcels ORDER BY 1')]
        for pid in pids:                                 # SYNTHETIC results of scene 1 for every parcel
            for band in ("B04", "B08"):
                c.execute(f'INSERT INTO "{db_schema}".sigs (pid, obsid, band, count) VALUES (%s, 1, %s, 4)',
                          (pid, band))
            c.execute(f'INSERT INTO "{db_schema}".hists VALUES (%s, 1, %s)', (pid, '{"4": 4}'))
    v2 = [f for f in feats if f["properties"]["fid"] != feats[0]["properties"]["fid"]]   # one removed
    moved = json.loads(json.dumps(v2[0]))
    moved["geometry"]["coordinates"][0] = [[x + 5, y] for x, y in moved["geometry"]["coordinates"][0]]
    v2[0] = moved                                                                          # one changed
    v2.append({"type": "Feature", "id": 1000, "properties": {"fid": 1000},
               "geometry": {"type": "Polygon", "coordinates": [[[155000, 190000], [155100, 190000],
                                                               [155100, 190100], [155000, 190000]]]}})  # one new
    path = gpkg(tmp_path, v2, epsg=31370, name="v2.gpkg")
    with pytest.raises(ParcelImportError) as err:
        import_parcels(db_url, cfg, path)
    msg = str(err.value)
    assert "1 parcels changed, 1 removed, 1 new" in msg and f"{len(pids) * 3:,} result rows" in msg
    rep = import_parcels(db_url, cfg, path, replace=True)
    assert rep.changed == {"changed": 1, "new": 1, "removed": 1} and rep.cleared_rows == 2 * 3
    with psycopg.connect(db_url) as c:
        left = {r[0] for r in c.execute(f'SELECT DISTINCT pid FROM "{db_schema}".sigs')}
    assert len(left) == len(pids) - 2 and feats[0]["properties"]["fid"] not in left


def test_reimport_with_the_same_geometries_refreshes_the_attributes(db_url, db_schema, tmp_path):
    """A new crop declaration on unchanged parcels: the attributes change, the results stay."""
    cfg = cfg_for(db_schema)
    feats = mechelen_features()
    import_parcels(db_url, cfg, gpkg(tmp_path, feats, epsg=31370, name="v1.gpkg"))
    ensure_partition(db_url, cfg, 1)
    pid = feats[0]["properties"]["fid"]
    with psycopg.connect(db_url) as c:
        c.execute(f'INSERT INTO "{db_schema}".sigs (pid, obsid, band, count) VALUES (%s, 1, %s, 4)', (pid, "B04"))
    v2 = json.loads(json.dumps(feats))
    v2[0]["properties"]["declared"] = "Potatoes"
    for f in v2[1:]:
        f["properties"]["declared"] = "Maize"
    rep = import_parcels(db_url, cfg, gpkg(tmp_path, v2, epsg=31370, name="v2.gpkg"))
    assert rep.unchanged and rep.cleared_rows == 0
    assert one(db_url, f'SELECT declared FROM "{db_schema}".parcels WHERE ogc_fid = %s', pid) == ("Potatoes",)
    assert one(db_url, f'SELECT count(*) FROM "{db_schema}".sigs')[0] == 1
