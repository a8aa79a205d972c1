-- A Sentinel-2 product republished with a newer processing baseline (same mission, tile and
-- datatake sensing time) supersedes the older one, if no stage of the older one started.
-- Already extracted products are kept: their rows stay valid under their own obsid.
WITH old AS (
    SELECT o.id
    FROM {schema}.dias_catalogue o
    WHERE o.card = 's2' AND o.status = 'ingested'
      AND EXISTS (SELECT 1 FROM {schema}.dias_catalogue n
                  WHERE n.card = 's2' AND n.sensor = o.sensor AND n.tile = o.tile
                    AND n.obstime = o.obstime AND n.processing_baseline > o.processing_baseline)
      AND NOT EXISTS (SELECT 1 FROM {schema}.scene_stages s
                      WHERE s.obsid = o.id AND s.status <> 'ingested')
), gone AS (
    DELETE FROM {schema}.scene_stages s USING old WHERE s.obsid = old.id
)
UPDATE {schema}.dias_catalogue c SET status = 'Superseded'
FROM old WHERE c.id = old.id
