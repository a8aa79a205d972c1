-- sigs rows per band of the scenes with a stage extracted since a time.
SELECT band, count(*)::bigint
FROM {schema}.sigs
WHERE obsid IN (SELECT obsid FROM {schema}.scene_stages WHERE updated_at >= %(since)s AND status = 'extracted')
GROUP BY band
ORDER BY band
