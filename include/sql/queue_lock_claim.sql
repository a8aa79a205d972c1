-- Lock the caller's own claimed stage row (first lock of a write transaction, so every
-- path locks stage rows before catalogue rows). No row = the lease is not the caller's.
SELECT obsid FROM {schema}.scene_stages
WHERE obsid = %(obsid)s AND stage = %(stage)s AND lease_owner = %(owner)s AND status = 'inprogress'
FOR UPDATE
