-- Signatures of one parcel in the given scenes and bands (primary key probes).
SELECT s.obsid, trim(s.band), s.count, s.mean, s.std, s.min, s.max, s.p25, s.p50, s.p75
FROM {schema}.sigs s
WHERE s.obsid = ANY (%(obsids)s::integer[]) AND s.pid = %(pid)s AND s.band = ANY (%(bands)s::bpchar[])
ORDER BY s.obsid, s.band
