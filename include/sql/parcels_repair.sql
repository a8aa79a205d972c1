-- Repair invalid parcel geometries in the staging table (polygonal part of ST_MakeValid).
UPDATE {schema}.{staging}
SET wkb_geometry = ST_Multi(ST_CollectionExtract(ST_MakeValid(wkb_geometry), 3))
WHERE wkb_geometry IS NOT NULL AND NOT ST_IsValid(wkb_geometry)
