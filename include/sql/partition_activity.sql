-- Is a partition pair [lo, hi) cold enough for CLUSTER? open_range: new obsids may still
-- fall into it (its end is beyond the catalogue's largest id); busy: stages of its scenes
-- in progress, or pending and able to run; mods: inserts + deletes of both tables so far,
-- last_mods: at the last CLUSTER (unchanged partitions are not clustered again).
SELECT %(hi)s::int - 1 > coalesce((SELECT max(id) FROM {schema}.dias_catalogue), 0) AS open_range,
       (SELECT count(*)::int FROM {schema}.scene_stages s
        WHERE s.obsid >= %(lo)s::int AND s.obsid < %(hi)s::int
          AND (s.status = 'inprogress'
               OR (s.status = 'ingested' AND NOT EXISTS (
                   -- an S2 band stage waits for its scene's SCL stage (cbm_ops.queue.REQUIRES);
                   -- one that is over without extraction (permanent error, attempts used up,
                   -- quarantined) leaves the band stage waiting for an operator: not busy
                   SELECT 1 FROM {schema}.scene_stages r
                   WHERE s.stage IN ('s2_10m', 's2_20m') AND r.obsid = s.obsid AND r.stage = 'scl'
                     AND r.status NOT IN ('ingested', 'inprogress', 'extracted')
                     AND (r.status = 'Quarantined' OR NOT (r.retryable AND r.attempts < %(max_attempts)s)))))
       ) AS busy,
       (SELECT coalesce(sum(n_tup_ins + n_tup_del), 0)::bigint FROM pg_stat_all_tables
        WHERE relid IN (to_regclass(%(sigs)s), to_regclass(%(hists)s))) AS mods,
       (SELECT cluster_mods FROM {schema}.result_partitions WHERE lo = %(lo)s::int) AS last_mods
