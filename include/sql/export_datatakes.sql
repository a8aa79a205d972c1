-- Datatakes sensed in [%(start)s, %(end)s) with their scenes, by time (one export batch each).
SELECT k.datatake, array_agg(k.obsid ORDER BY k.obsid)
FROM {schema}.scene_datatakes k
WHERE k.obstime >= %(start)s AND k.obstime < %(end)s
GROUP BY k.datatake
ORDER BY min(k.obstime), k.datatake
