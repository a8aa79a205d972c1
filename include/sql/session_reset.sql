-- A pooled connection going back to its pool holds no session-level advisory lock (the
-- scene queue's liveness locks belong to a worker's own Session, never to the pool).
SELECT pg_advisory_unlock_all()
