-- CARD products of one card sensed in a window (the ordering complement is computed
-- against their Sentinel-1 identity, cbm_ops.harvest.ordering.s1_identity).
SELECT reference
FROM {schema}.dias_catalogue
WHERE card = %(card)s AND obstime BETWEEN %(start)s AND %(end)s
