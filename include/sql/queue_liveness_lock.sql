-- Take the liveness lock of a claimed stage (session level: it outlives the transaction
-- and is released by queue_liveness_unlock.sql, or by PostgreSQL when the session ends).
-- Key: int4 ((hash of the schema) high 16 bits | attempt low 16 bits), int4 (obsid * 8 + stage).
SELECT pg_try_advisory_lock((hashtext(%(lock_ns)s) & -65536) | (%(attempts)s::int & 65535),
                            %(obsid)s::int * 8 + %(stage_idx)s::int)
