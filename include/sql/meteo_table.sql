-- Optional daily weather of an AOI (cbm import-meteo; served by the JRC route weatherTimeSeries):
-- one row per day and parcel (pid) or per day and grid cell (EPSG:4326 polygon; a parcel takes
-- the cell that holds its centroid, as the JRC's era5_grid), the JRC's columns and units
-- (tmin, tmax, tmean: air temperature at 2 m, degrees Celsius; prec: precipitation, mm per day).
CREATE TABLE IF NOT EXISTS {schema}.meteo (
    pid        integer,
    cell       geometry(Polygon, 4326),
    meteo_date date NOT NULL,
    tmin       real,
    tmax       real,
    tmean      real,
    prec       real,
    CONSTRAINT meteo_pid_or_cell CHECK ((pid IS NULL) <> (cell IS NULL))
);
CREATE UNIQUE INDEX IF NOT EXISTS meteo_pid_date_idx ON {schema}.meteo (pid, meteo_date) WHERE pid IS NOT NULL;
CREATE UNIQUE INDEX IF NOT EXISTS meteo_cell_date_idx ON {schema}.meteo (md5(ST_AsBinary(cell)), meteo_date)
    WHERE cell IS NOT NULL;
CREATE INDEX IF NOT EXISTS meteo_cell_idx ON {schema}.meteo USING gist (cell) WHERE cell IS NOT NULL;
