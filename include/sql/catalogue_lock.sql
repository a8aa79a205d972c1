-- Lock catalogue rows in id order before recomputing their status summary: concurrent
-- completions of one scene's stages then see each other's committed stage rows.
SELECT id FROM {schema}.dias_catalogue WHERE (%(obsids)s::int[] IS NULL OR id = ANY (%(obsids)s::int[])) ORDER BY id FOR UPDATE
