-- Release the liveness lock of a stage this session finished, failed or gave back.
SELECT pg_advisory_unlock((hashtext(%(lock_ns)s) & -65536) | (%(attempts)s::int & 65535),
                          %(obsid)s::int * 8 + %(stage_idx)s::int)
