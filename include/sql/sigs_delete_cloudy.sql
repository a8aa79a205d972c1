-- Delete the sigs rows of parcel-dates that are fully cloud covered: the parcel's SCL
-- histogram for that scene has class 9 (cloud, high probability) only (seed maintenance
-- query). The histogram row is kept. One partition pair (same obsid range) at a time;
-- scenes with a stage in progress are left to their writer.
DELETE FROM {schema}.{sigs_part} s
USING {schema}.{hists_part} h
WHERE s.pid = h.pid AND s.obsid = h.obsid
  AND (SELECT array_agg(k) FROM json_object_keys(h.hist) AS k) = ARRAY['9']
  AND NOT EXISTS (SELECT 1 FROM {schema}.scene_stages st WHERE st.obsid = s.obsid AND st.status = 'inprogress')
