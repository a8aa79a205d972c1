-- Replace the parcel table by the imported staging table (one transaction).
DROP TABLE IF EXISTS {schema}.{parcels};
CREATE TABLE {schema}.{parcels} AS SELECT * FROM {schema}.{staging} ORDER BY ogc_fid;
ALTER TABLE {schema}.{parcels} ADD PRIMARY KEY (ogc_fid);
CREATE INDEX ON {schema}.{parcels} USING gist (wkb_geometry);

