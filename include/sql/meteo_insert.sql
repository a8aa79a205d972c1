-- The staged weather rows (cells as EPSG:4326 polygons from WKT).
INSERT INTO {schema}.meteo (pid, cell, meteo_date, tmin, tmax, tmean, prec)
SELECT s.pid, ST_GeomFromText(s.cell, 4326), s.meteo_date, s.tmin, s.tmax, s.tmean, s.prec
FROM meteo_stage s
