-- Operator re-run of scenes' stages (claimed stages are left to their owner).
UPDATE {schema}.scene_stages
SET status = 'ingested', attempts = 0, retryable = true, lease_owner = NULL,
    lease_expires = NULL, updated_at = now()
WHERE obsid = ANY (%(obsids)s::int[]) AND stage = ANY (%(stages)s::text[]) AND status <> 'inprogress'
