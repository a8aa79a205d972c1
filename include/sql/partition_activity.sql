-- Is a partition pair [lo, hi) cold enough for CLUSTER? open_range: new obsids may still
-- fall into it (its end is beyond the catalogue's largest id); busy: stages of its scenes
-- pending or in progress; mods: inserts + deletes of both tables so far, last_mods: at
-- the last CLUSTER (unchanged partitions are not clustered again).
SELECT %(hi)s::int - 1 > coalesce((SELECT max(id) FROM {schema}.dias_catalogue), 0) AS open_range,
       (SELECT count(*)::int FROM {schema}.scene_stages
        WHERE obsid >= %(lo)s::int AND obsid < %(hi)s::int AND status IN ('ingested', 'inprogress')) AS busy,
       (SELECT coalesce(sum(n_tup_ins + n_tup_del), 0)::bigint FROM pg_stat_all_tables
        WHERE relid IN (to_regclass(%(sigs)s), to_regclass(%(hists)s))) AS mods,
       (SELECT cluster_mods FROM {schema}.result_partitions WHERE lo = %(lo)s::int) AS last_mods
