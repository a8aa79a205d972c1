-- A stage that failed the quality gate: no rows were written; it waits for an operator
-- (`cbm release`), cleanup does not requeue it. Only the lease owner can.
UPDATE {schema}.scene_stages
SET status = 'Quarantined', retryable = false, last_error = %(error)s, quality = %(quality)s,
    lease_owner = NULL, lease_expires = NULL, updated_at = now()
WHERE obsid = %(obsid)s AND stage = %(stage)s AND lease_owner = %(owner)s AND status = 'inprogress'
RETURNING obsid
