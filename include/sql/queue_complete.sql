-- Mark a claimed stage done; only the lease owner can (no row returned = lease lost).
-- Records what produced the rows (lineage) and the quality gate's measurements; an operator's
-- release of the gate covered this one extraction (quality.released_by_operator keeps it).
UPDATE {schema}.scene_stages
SET status = %(status)s, lease_owner = NULL, lease_expires = NULL, last_error = NULL,
    retryable = true, parcels = %(parcels)s, rows = %(rows)s, seconds = %(seconds)s,
    lineage = %(lineage)s, quality = %(quality)s, gate_released = false, updated_at = now()
WHERE obsid = %(obsid)s AND stage = %(stage)s AND lease_owner = %(owner)s AND status = 'inprogress'
RETURNING obsid
