-- Parcel viewer: one Mapbox Vector Tile (layer "parcels") of the parcels in web-mercator tile
-- z/x/y with the colour attributes of one year computed LIVE from sigs and hists (the fallback
-- while an AOI-year has no summary, see viewer_tile.sql for the attributes). One statement per
-- tile: the parcels of the tile (GiST), the year's S2 scenes whose footprint touches the tile
-- (GiST), then for each scene and parcel one probe of the primary keys of sigs and hists. Its
-- cost grows with parcels x scenes (make bench: seconds at zoom 12 for a year of 73 dates).
-- A datatake belongs to the year of its first sensing time among the scenes found.
-- Parameters: z, x, y, srid (of the parcel table), west, south, east, north (the parcel extent in
-- EPSG:4326, widened a little), start, end (the year), has_crop.
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
sc AS MATERIALIZED (
    SELECT k.obsid, k.datatake, k.obstime, k.reference, k.processing_baseline
    FROM {schema}.scene_datatakes k
    JOIN {schema}.dias_catalogue d ON d.id = k.obsid, b
    WHERE d.card = 's2'
      AND d.obstime >= %(start)s::timestamp - interval '1 day' AND d.obstime < %(end)s::timestamp + interval '1 day'
      AND (d.footprint IS NULL OR d.footprint && b.wgs84)
      AND EXISTS (SELECT 1 FROM tp)
),
dt AS (
    SELECT sc.datatake, min(sc.obstime) AS sensed FROM sc GROUP BY sc.datatake
),
raw AS (
    SELECT o.pid, sc.datatake, sc.obstime, sc.reference, sc.processing_baseline,
           max(o.n) AS max_count, max(o.scl_pixels) AS scl_pixels, bool_and(o.clear) AS cloudfree
    FROM sc
    CROSS JOIN tp
    CROSS JOIN LATERAL (       -- key probes (obsid, pid): never a scan of a scene's rows
        SELECT max(s.count) AS n, NULL::integer AS scl_pixels, NULL::boolean AS clear, tp.pid
        FROM {schema}.sigs s
        WHERE s.obsid = sc.obsid AND s.pid = tp.pid
        HAVING count(*) > 0
        UNION ALL
        SELECT NULL, (SELECT sum(e.value::bigint) FROM json_each_text(h.hist) AS e)::integer,
               NOT EXISTS (SELECT 1 FROM json_object_keys(h.hist) AS k WHERE k IN ('3', '8', '9', '10', '11')),
               tp.pid
        FROM {schema}.hists h
        WHERE h.obsid = sc.obsid AND h.pid = tp.pid
    ) o
    GROUP BY o.pid, sc.obsid, sc.datatake, sc.obstime, sc.reference, sc.processing_baseline
),
canon AS (
    SELECT DISTINCT ON (r.pid, r.datatake) r.pid, r.datatake, r.obstime, r.cloudfree
    FROM raw r
    ORDER BY r.pid, r.datatake, r.scl_pixels DESC NULLS LAST, r.max_count DESC NULLS LAST,
             r.processing_baseline DESC NULLS LAST, r.reference
),
per AS (
    SELECT c.pid, count(*) AS s2_obs, count(*) FILTER (WHERE c.cloudfree) AS s2_clear,
           max(c.obstime) FILTER (WHERE c.cloudfree) AS last_clear
    FROM canon c JOIN dt ON dt.datatake = c.datatake
    WHERE dt.sensed >= %(start)s::timestamp AND dt.sensed < %(end)s::timestamp
    GROUP BY c.pid
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
    LEFT JOIN per ON per.pid = tp.pid
)
SELECT ST_AsMVT(mvt, 'parcels', 4096, 'geom') FROM mvt WHERE mvt.geom IS NOT NULL
