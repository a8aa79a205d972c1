-- Replace the parcel table by the imported staging table (one transaction); the geometry
-- column is typed MultiPolygon in the parcel set's SRID ({srid}: integer literal).
DROP TABLE IF EXISTS {schema}.{parcels};
CREATE TABLE {schema}.{parcels} AS SELECT * FROM {schema}.{staging} ORDER BY ogc_fid;
ALTER TABLE {schema}.{parcels} ALTER COLUMN wkb_geometry TYPE geometry(MultiPolygon, {srid})
    USING ST_Multi(wkb_geometry);
ALTER TABLE {schema}.{parcels} ADD PRIMARY KEY (ogc_fid);
CREATE INDEX ON {schema}.{parcels} USING gist (wkb_geometry);
