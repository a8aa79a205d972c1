-- SRID of the parcel table's geometry column.
SELECT Find_SRID(%(schema)s, %(table)s, 'wkb_geometry')
