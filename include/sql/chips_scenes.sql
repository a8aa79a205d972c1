-- Scenes for image chips at a point (EPSG:4326): the products of card %(card)s whose
-- catalogue footprint contains the point, sensed in [%(start)s, %(end)s), superseded ones
-- left out; one per chip key, %(per_day)s false: the datatake (S2, as the JRC's rinseAndDryS2),
-- true: the sensing day (S1, as the JRC's rinseAndDryS1). Among the products of one key the
-- largest part of the chip square %(box)s (WKB, EPSG:4326) inside the footprint wins, then the
-- newest processing baseline, then the smallest product name (the canonical tie-break).
-- Served by the GiST index on the footprint and the (card, obstime) index.
SELECT s.obsid, s.reference, s.obstime, s.card, s.product_identifier, s.processing_baseline
FROM (
    SELECT k.obsid, k.reference, k.obstime, k.card, d.product_identifier, k.processing_baseline,
           row_number() OVER (
               PARTITION BY CASE WHEN %(per_day)s THEN to_char(k.obstime, 'YYYYMMDD') ELSE k.datatake END
               ORDER BY ST_Area(ST_Intersection(d.footprint, ST_GeomFromWKB(%(box)s, 4326))) DESC,
                        k.processing_baseline DESC NULLS LAST, k.reference) AS rank
    FROM {schema}.dias_catalogue d
    JOIN {schema}.scene_datatakes k ON k.obsid = d.id
    WHERE d.card = %(card)s::bpchar
      AND d.status <> 'Superseded'
      AND d.obstime >= %(start)s::timestamp AND d.obstime < %(end)s::timestamp
      AND ST_Intersects(d.footprint, ST_SetSRID(ST_MakePoint(%(lon)s, %(lat)s), 4326))
) s
WHERE s.rank = 1
ORDER BY s.obstime, s.reference
