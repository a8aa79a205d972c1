-- Analyst views of an AOI schema, applied by ensure_schema after schema.sql (idempotent;
-- editing this file changes the schema version, so it is re-applied at the next setup).
-- They read the parent tables sigs/hists, so they work unchanged on partitioned tables.
--
-- OBSERVATION: one parcel (pid) in one scene (obsid = dias_catalogue.id) that has rows in
-- sigs or hists. The same acquisition can give a parcel several observations: Sentinel-2
-- granules (tiles) of one datatake overlap by ~10 km and are often projected in different
-- UTM zones; consecutive Sentinel-1 slices of one datatake meet at the parcel; a product
-- republished with a newer baseline. The raw rows all stay; one of them is CANONICAL.
--
-- DATATAKE KEY (column "datatake", text 'card:sensor:id'):
--   s2     : the datatake sensing start of the product name, 3rd field
--            (S2B_MSIL2A_20230601T105621_N0510_R051_T31UDS_... -> 's2:2B:20230601T105621'),
--            shared by every granule of the datatake whatever its tile or UTM zone;
--   bs, c6 : absolute orbit and mission datatake id of the Sentinel-1 source name, 7th and
--            8th fields (S1A_IW_GRDH_1SDV_<start>_<stop>_021474_024F9D_E4C7_CARD_BS ->
--            'bs:1A:021474_024F9D'), shared by the consecutive slices of one datatake;
--   other  : names that do not parse: the sensing time to the second.
--   The card is part of the key: CARD-BS and CARD-COH6 of one acquisition are different
--   observations.
--
-- CANONICAL RULE, among the observations of one pid with the same datatake key, in order:
--   0. a product that was republished (dias_catalogue.superseded_by set: same tile and
--      datatake, newer baseline or generation time; catalogue_supersede.sql) ranks last;
--   1. most valid SCL pixels: the sum of the parcel's SCL histogram (hists; SCL 0 "no data"
--      is never stored), i.e. the parcel's 20 m pixels the granule actually covers;
--      NULL (S1, or no histogram) sorts last;
--   2. most valid pixels of the best-covered band: max(sigs.count) over its bands;
--   3. the newest processing baseline (NULL last);
--   4. the smallest reference (product name): a stable tie-break, the same in every
--      database whatever the harvest order (obsid is not).
--   Ties on 1-3 happen when two granules cover the parcel completely on the same pixel
--   lattice (two tiles of one UTM zone). The choice uses the rows present: while a
--   granule's stages are still running it can change; it is settled when both are done.
--   A Quarantined stage writes no rows, so it never makes an observation.
--
-- CLOUD FLAG (column "cloudfree"): true when the parcel's SCL histogram has none of the
-- classes 3 (cloud shadow), 8, 9 (cloud medium/high probability), 10 (thin cirrus),
-- 11 (snow) (the JRC clients' rule, cbm_ops.analyst.report.CLOUDY_SCL); NULL without histogram.
--
-- (Regex quantifiers are written {{n}}: the file is a psycopg.sql template.) Columns of these
-- views can only be appended (CREATE OR REPLACE VIEW); dropping or renaming one needs a DROP
-- VIEW first.
--
-- Both views are served by the primary keys when filtered on pid: one (obsid, pid) probe
-- of sigs and of hists per scene of dias_catalogue (see docs/analyst-api.md):
--   SELECT * FROM <aoi>.parcel_observations WHERE pid = 123 AND card = 's2' ORDER BY obstime;

-- Every scene of the catalogue with its datatake key.
CREATE OR REPLACE VIEW {schema}.scene_datatakes AS
SELECT d.id AS obsid,
       d.obstime,
       d.card,
       d.sensor,
       d.card || ':' || d.sensor || ':' || coalesce(
           CASE WHEN d.card = 's2'
                THEN substring(d.reference FROM '^S2[A-D]_MSI\w{{3}}_(\d{{8}}T\d{{6}})_') END,
           CASE WHEN d.card IN ('bs', 'c6')
                THEN substring(d.reference FROM
                     '^S1[A-D]_\w\w_\w{{4}}_\w{{4}}_\d{{8}}T\d{{6}}_\d{{8}}T\d{{6}}_(\d{{6}}_[0-9A-Fa-f]{{6}})_') END,
           to_char(d.obstime, 'YYYYMMDD"T"HH24MISS')) AS datatake,
       d.reference,
       d.tile,
       d.epsg,
       d.relative_orbit,
       d.orbit_direction,
       d.processing_baseline,
       d.superseded_by IS NOT NULL AS superseded
FROM {schema}.dias_catalogue d;

COMMENT ON VIEW {schema}.scene_datatakes IS
    'dias_catalogue with the datatake key of each scene; see include/sql/schema_views.sql';

-- Every observation of every parcel, with the measures of the canonical rule.
CREATE OR REPLACE VIEW {schema}.parcel_observations_raw AS
SELECT o.pid,
       d.obsid,
       d.obstime,
       d.card,
       d.sensor,
       d.datatake,
       d.reference,
       d.tile,
       d.epsg,
       d.relative_orbit,
       d.orbit_direction,
       d.processing_baseline,
       (SELECT sum(e.value::bigint) FROM json_each_text(o.hist) AS e)::integer AS scl_pixels,
       o.max_count,
       o.bands,
       o.hist,
       CASE WHEN o.hist IS NOT NULL THEN NOT EXISTS (
           SELECT 1 FROM json_object_keys(o.hist) AS k WHERE k IN ('3', '8', '9', '10', '11')) END AS cloudfree,
       d.superseded
FROM {schema}.scene_datatakes d
CROSS JOIN LATERAL (
    SELECT u.pid,
           max(u.n)::integer AS max_count,
           array_agg(u.band ORDER BY u.band) FILTER (WHERE u.band IS NOT NULL) AS bands,
           (array_agg(u.hist) FILTER (WHERE u.hist IS NOT NULL))[1] AS hist
    FROM (SELECT s.pid, s.count AS n, trim(s.band) AS band, NULL::json AS hist
          FROM {schema}.sigs s WHERE s.obsid = d.obsid
          UNION ALL
          SELECT h.pid, NULL, NULL, h.hist
          FROM {schema}.hists h WHERE h.obsid = d.obsid) u
    GROUP BY u.pid) o;

COMMENT ON VIEW {schema}.parcel_observations_raw IS
    'Every (pid, obsid) with sigs or hists rows, its datatake key and the measures of the canonical rule; see include/sql/schema_views.sql';

-- The canonical observation of each parcel and datatake (rank 1 of the rule above), with
-- the number of raw observations of that datatake ("duplicates", > 1 where granules overlap).
CREATE OR REPLACE VIEW {schema}.parcel_observations AS
SELECT x.pid, x.obsid, x.obstime, x.card, x.sensor, x.datatake, x.reference, x.tile, x.epsg,
       x.relative_orbit, x.orbit_direction, x.processing_baseline, x.scl_pixels, x.max_count,
       x.bands, x.hist, x.cloudfree, x.duplicates
FROM (SELECT r.*,
             row_number() OVER (PARTITION BY r.pid, r.datatake
                                ORDER BY r.superseded, r.scl_pixels DESC NULLS LAST, r.max_count DESC NULLS LAST,
                                         r.processing_baseline DESC NULLS LAST, r.reference) AS canonical_rank,
             count(*) OVER (PARTITION BY r.pid, r.datatake) AS duplicates
      FROM {schema}.parcel_observations_raw r) x
WHERE x.canonical_rank = 1;

COMMENT ON VIEW {schema}.parcel_observations IS
    'Canonical observation per (pid, datatake): most SCL pixels, then max band count, newest baseline, smallest reference; see include/sql/schema_views.sql';
