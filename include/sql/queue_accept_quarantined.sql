-- Operator release of quarantined stages: pending again, with the quality gate lifted for
-- their next extraction (its checks are still recorded).
UPDATE {schema}.scene_stages
SET status = 'ingested', attempts = 0, retryable = true, gate_released = true, lease_owner = NULL,
    lease_expires = NULL, updated_at = now()
WHERE obsid = ANY (%(obsids)s::int[]) AND (%(stages)s::text[] IS NULL OR stage = ANY (%(stages)s::text[]))
  AND status = 'Quarantined'
RETURNING obsid, stage
