-- Daily weather of one parcel in [%(start)s, %(end)s), by date, as the JRC's weatherTimeSeries
-- (date as YYYY-MM-DD text): the parcel's own rows; without them the grid cell that holds the
-- parcel's centroid (the smallest cell where cells overlap).
WITH own AS (
    SELECT m.meteo_date, m.tmin, m.tmax, m.tmean, m.prec
    FROM {schema}.meteo m
    WHERE m.pid = %(pid)s AND m.meteo_date >= %(start)s::date AND m.meteo_date < %(end)s::date
),
centroid AS (
    SELECT ST_Transform(ST_Centroid(p.wkb_geometry), 4326) AS c FROM {schema}.{parcels} p WHERE p.ogc_fid = %(pid)s
),
cell AS (
    SELECT DISTINCT ON (m.meteo_date) m.meteo_date, m.tmin, m.tmax, m.tmean, m.prec
    FROM {schema}.meteo m, centroid
    WHERE m.cell IS NOT NULL AND ST_Intersects(m.cell, centroid.c)
      AND m.meteo_date >= %(start)s::date AND m.meteo_date < %(end)s::date
      AND NOT EXISTS (SELECT 1 FROM own)
    ORDER BY m.meteo_date, ST_Area(m.cell)
)
SELECT to_char(meteo_date, 'YYYY-MM-DD'), tmin, tmax, tmean, prec FROM own
UNION ALL
SELECT to_char(meteo_date, 'YYYY-MM-DD'), tmin, tmax, tmean, prec FROM cell
ORDER BY 1
