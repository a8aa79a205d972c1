-- Give a claimed, unprocessed scene back; the claim does not count as an attempt.
UPDATE {schema}.scene_stages
SET status = 'ingested', lease_owner = NULL, lease_expires = NULL,
    attempts = greatest(attempts - 1, 0), updated_at = now()
WHERE obsid = %(obsid)s AND stage = %(stage)s AND lease_owner = %(owner)s AND status = 'inprogress'
