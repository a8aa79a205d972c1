-- The stored days of the staged parcels and cells, replaced by the import (meteo_insert.sql in
-- the same transaction): a re-import changes nothing, a corrected file replaces its days.
DELETE FROM {schema}.meteo m
USING meteo_stage s
WHERE m.meteo_date = s.meteo_date
  AND ((s.pid IS NOT NULL AND m.pid = s.pid)
       OR (s.cell IS NOT NULL AND m.cell IS NOT NULL
           AND md5(ST_AsBinary(m.cell)) = md5(ST_AsBinary(ST_GeomFromText(s.cell, 4326)))))
