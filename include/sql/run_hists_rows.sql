SELECT count(*)::bigint
FROM {schema}.hists
WHERE obsid IN (SELECT obsid FROM {schema}.scene_stages
                WHERE updated_at >= %(since)s AND status = 'extracted' AND stage = 'scl')
