-- UTM EPSG codes of the AOI's queued Sentinel-2 scenes (the lattices to rasterize).
SELECT DISTINCT c.epsg
FROM {schema}.dias_catalogue c
WHERE c.card = 's2' AND c.epsg IS NOT NULL
  AND EXISTS (SELECT 1 FROM {schema}.scene_stages s WHERE s.obsid = c.id)
ORDER BY 1
