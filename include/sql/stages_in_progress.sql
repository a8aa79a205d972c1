-- Scene stages currently claimed with a live lease.
SELECT count(*)::int FROM {schema}.scene_stages WHERE status = 'inprogress' AND lease_expires > now()
