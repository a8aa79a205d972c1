-- Renew the lease of a scene the owner is still processing.
UPDATE {schema}.scene_stages
SET lease_expires = now() + make_interval(secs => %(lease_s)s), updated_at = now()
WHERE obsid = %(obsid)s AND stage = %(stage)s AND lease_owner = %(owner)s AND status = 'inprogress'
RETURNING obsid
