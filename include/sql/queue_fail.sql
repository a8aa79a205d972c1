-- Record a failure under a named status (only the lease owner can).
UPDATE {schema}.scene_stages
SET status = %(status)s, retryable = %(retryable)s, last_error = %(error)s,
    lease_owner = NULL, lease_expires = NULL, updated_at = now()
WHERE obsid = %(obsid)s AND stage = %(stage)s AND lease_owner = %(owner)s AND status = 'inprogress'
RETURNING obsid
