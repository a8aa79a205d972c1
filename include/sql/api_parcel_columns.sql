-- Column names of the parcel table, in table order (no rows are read).
SELECT * FROM {schema}.{parcels} LIMIT 0
