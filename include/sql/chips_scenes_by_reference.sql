-- Scenes named by their product names (the JRC batch chip routes' "tiles"), not superseded.
SELECT d.id, d.reference, d.obstime, d.card, d.product_identifier, d.processing_baseline
FROM {schema}.dias_catalogue d
WHERE d.reference = ANY (%(references)s::text[]) AND d.status <> 'Superseded'
ORDER BY d.obstime, d.reference
