-- Record a CLUSTER of a partition pair, with its modification counter at that time.
UPDATE {schema}.result_partitions
SET clustered_at = now(),
    cluster_mods = (SELECT coalesce(sum(n_tup_ins + n_tup_del), 0)::bigint FROM pg_stat_all_tables
                    WHERE relid IN (to_regclass(%(sigs)s), to_regclass(%(hists)s)))
WHERE lo = %(lo)s::int
