-- Delete the sigs rows of parcel-dates that are fully cloud covered: the parcel's SCL
-- histogram for that scene has class 9 (cloud, high probability) only (seed maintenance
-- query). The histogram row is kept.
DELETE FROM {schema}.sigs s
USING {schema}.hists h
WHERE s.pid = h.pid AND s.obsid = h.obsid
  AND (SELECT array_agg(k) FROM json_object_keys(h.hist) AS k) = ARRAY['9']
