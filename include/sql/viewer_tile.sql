-- Parcel viewer: one Mapbox Vector Tile (layer "parcels") of the parcels in web-mercator tile
-- z/x/y, with the colour attributes of one year (the page colours them client-side):
--   pid          parcel id (ogc_fid)
--   crop         the AOI's parcels.crop_column as text (NULL without one: %(has_crop)s false)
--   s2_obs       canonical Sentinel-2 observations: S2 datatakes of the year with sigs or hists
--                rows for the parcel (one per datatake, the rule of schema_views.sql)
--   s2_clear     of these, the cloud-free ones (no SCL 3, 8, 9, 10, 11 in the parcel's histogram
--                of the canonical observation)
--   last_clear   day of the year (1-366) of the last cloud-free canonical observation, NULL if none
--   quarantined  scenes of the year (any card) with a Quarantined stage whose footprint touches it
-- s2_obs, s2_clear and last_clear come from the AOI-year's summary (viewer_parcel_summary, see
-- viewer_summary_refresh.sql; one primary-key probe per parcel); quarantined is computed here
-- (few scenes). The parcels of the tile by the GiST index; geometry in web mercator, clipped to
-- the tile with the 64/4096 buffer.
-- Parameters: z, x, y, srid (of the parcel table), west, south, east, north (the parcel extent in
-- EPSG:4326, widened a little), year, start, end (the year), has_crop.
WITH t AS (
    SELECT ST_TileEnvelope(%(z)s, %(x)s, %(y)s) AS env,
           ST_TileEnvelope(%(z)s, %(x)s, %(y)s, margin => 0.015625) AS wide     -- the 64/4096 MVT buffer
),
w AS (     -- the tile in EPSG:4326 (edges segmentized: their box covers the tile)
    SELECT t.env, ST_Transform(ST_Segmentize(t.wide, (ST_XMax(t.env) - ST_XMin(t.env)) / 8), 4326) AS wgs84
    FROM t
),
b AS (     -- and in the parcel CRS, cut to the parcel extent first (%(west)s .. %(north)s, degrees):
           -- a coarse tile reaches beyond the domain of a projected CRS
    SELECT w.env, w.wgs84,
           ST_Transform(ST_Segmentize(ST_Intersection(w.wgs84, ST_MakeEnvelope(%(west)s, %(south)s, %(east)s,
                                                                               %(north)s, 4326)), 0.01),
                        %(srid)s) AS native
    FROM w
),
tp AS MATERIALIZED (
    SELECT p.ogc_fid AS pid, CASE WHEN %(has_crop)s THEN p.{crop}::text END AS crop, p.wkb_geometry AS geom
    FROM {schema}.{parcels} p, b
    WHERE p.wkb_geometry && b.native
),
qs AS MATERIALIZED (
    SELECT d.id, ST_Transform(d.footprint, %(srid)s) AS fp
    FROM {schema}.dias_catalogue d, b
    WHERE d.obstime >= %(start)s::timestamp AND d.obstime < %(end)s::timestamp
      AND d.footprint && b.wgs84
      AND EXISTS (SELECT 1 FROM {schema}.scene_stages st WHERE st.obsid = d.id AND st.status = 'Quarantined')
),
mvt AS (
    SELECT tp.pid, tp.crop,
           coalesce(per.s2_obs, 0)::integer AS s2_obs,
           coalesce(per.s2_clear, 0)::integer AS s2_clear,
           extract(doy FROM per.last_clear)::integer AS last_clear,
           (SELECT count(*) FROM qs WHERE ST_Intersects(qs.fp, tp.geom))::integer AS quarantined,
           ST_AsMVTGeom(ST_Transform(tp.geom, 3857), b.env, 4096, 64, true) AS geom
    FROM tp
    CROSS JOIN b
    LEFT JOIN {schema}.viewer_parcel_summary per ON per.year = %(year)s AND per.pid = tp.pid
)
SELECT ST_AsMVT(mvt, 'parcels', 4096, 'geom') FROM mvt WHERE mvt.geom IS NOT NULL
