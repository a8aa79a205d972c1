-- The partitions of sigs and hists (obsid ranges), oldest first.
SELECT lo, hi, sigs_table, hists_table, clustered_at, cluster_mods
FROM {schema}.result_partitions
ORDER BY lo
