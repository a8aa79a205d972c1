-- Room for a new partition around an obsid: the end of the partition below it and the
-- start of the one above it (NULL when there is none).
SELECT (SELECT max(hi) FROM {schema}.result_partitions WHERE hi <= %(obsid)s),
       (SELECT min(lo) FROM {schema}.result_partitions WHERE lo > %(obsid)s),
       (SELECT lo FROM {schema}.result_partitions WHERE lo <= %(obsid)s AND %(obsid)s < hi)
