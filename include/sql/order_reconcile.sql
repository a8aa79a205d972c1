-- Order items whose CARD product is now catalogued become 'harvested' (with its obsid).
-- The identity expression is cbm_ops.harvest.ordering.s1_identity: mission, start, stop,
-- absolute orbit, datatake id of the Sentinel-1 name (braces doubled for psycopg.sql).
UPDATE {schema}.card_order_items i
SET status = 'harvested', obsid = c.id, updated_at = now()
FROM {schema}.dias_catalogue c
WHERE i.status <> 'harvested'
  AND c.card = i.card
  AND c.obstime BETWEEN i.obstime - interval '1 day' AND i.obstime + interval '1 day'
  AND array_to_string(regexp_match(c.reference,
        '^(S1[A-D])_\w{{2}}_\w{{4}}_\w{{4}}_(\d{{8}}T\d{{6}})_(\d{{8}}T\d{{6}})_(\d{{6}})_([0-9A-F]{{6}})_'), '_')
      = i.identity
