-- Record the S2 BOA_ADD_OFFSET applied per band (merged with bands of other stages).
UPDATE {schema}.dias_catalogue
SET boa_add_offset = coalesce(boa_add_offset, '{{}}'::jsonb) || %(offsets)s::jsonb
WHERE id = %(obsid)s
