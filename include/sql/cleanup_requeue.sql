UPDATE {schema}.scene_stages
SET status = 'ingested', lease_owner = NULL, lease_expires = NULL, updated_at = now()
WHERE stage = %(stage)s AND obsid = ANY (%(obsids)s::int[])
