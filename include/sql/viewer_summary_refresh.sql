-- Parcel viewer: recompute the summary of one year (%(year)s, window %(start)s .. %(end)s) for
-- every parcel, by the canonical rule of schema_views.sql: the year's S2 scenes (a day either side,
-- so a datatake's first sensing time is found), per (pid, scene) the SCL pixels and cloud flag of
-- the histogram and the largest band count, the canonical scene per (pid, datatake), kept when
-- the datatake started in the year. One pass over the year's sigs and hists partitions.
WITH sc AS MATERIALIZED (
    SELECT k.obsid, k.datatake, k.obstime, k.reference, k.processing_baseline
    FROM {schema}.scene_datatakes k
    WHERE k.card = 's2'
      AND k.obstime >= %(start)s::timestamp - interval '1 day' AND k.obstime < %(end)s::timestamp + interval '1 day'
),
dt AS (
    SELECT sc.datatake, min(sc.obstime) AS sensed FROM sc GROUP BY sc.datatake
),
raw AS (
    SELECT o.pid, o.obsid, max(o.n) AS max_count, max(o.scl_pixels) AS scl_pixels, bool_and(o.clear) AS cloudfree
    FROM (
        SELECT s.pid, s.obsid, s.count AS n, NULL::integer AS scl_pixels, NULL::boolean AS clear
        FROM {schema}.sigs s WHERE s.obsid = ANY (ARRAY(SELECT sc.obsid FROM sc))
        UNION ALL
        SELECT h.pid, h.obsid, NULL, (SELECT sum(e.value::bigint) FROM json_each_text(h.hist) AS e)::integer,
               NOT EXISTS (SELECT 1 FROM json_object_keys(h.hist) AS k WHERE k IN ('3', '8', '9', '10', '11'))
        FROM {schema}.hists h WHERE h.obsid = ANY (ARRAY(SELECT sc.obsid FROM sc))
    ) o
    GROUP BY o.pid, o.obsid
),
canon AS (
    SELECT DISTINCT ON (r.pid, sc.datatake) r.pid, sc.datatake, sc.obstime, r.cloudfree
    FROM raw r JOIN sc ON sc.obsid = r.obsid
    ORDER BY r.pid, sc.datatake, r.scl_pixels DESC NULLS LAST, r.max_count DESC NULLS LAST,
             sc.processing_baseline DESC NULLS LAST, sc.reference
)
INSERT INTO {schema}.viewer_parcel_summary (year, pid, s2_obs, s2_clear, last_clear)
SELECT %(year)s, c.pid, count(*), count(*) FILTER (WHERE c.cloudfree), max(c.obstime) FILTER (WHERE c.cloudfree)
FROM canon c JOIN dt ON dt.datatake = c.datatake
WHERE dt.sensed >= %(start)s::timestamp AND dt.sensed < %(end)s::timestamp
GROUP BY c.pid
