-- migrate-partitions: record the converted tables as the partition pair [0, hi).
INSERT INTO {schema}.result_partitions (lo, hi, sigs_table, hists_table)
VALUES (0, {hi}, 'sigs_legacy', 'hists_legacy')
ON CONFLICT (lo) DO NOTHING
