-- Datatakes that start in [%(start)s, %(end)s), with their scenes, by time (one export
-- batch each). A datatake belongs to the window of its first sensing time (as in
-- api_parcel_observations.sql): one across midnight of New Year's Eve is exported once,
-- in the year it started, with all its scenes.
SELECT k.datatake, array_agg(k.obsid ORDER BY k.obsid)
FROM {schema}.scene_datatakes k
WHERE k.obstime >= %(start)s::timestamp - interval '1 day' AND k.obstime < %(end)s::timestamp + interval '1 day'
GROUP BY k.datatake
HAVING min(k.obstime) >= %(start)s::timestamp AND min(k.obstime) < %(end)s::timestamp
ORDER BY min(k.obstime), k.datatake
