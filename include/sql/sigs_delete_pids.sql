-- Remove the signatures of some parcels from one partition (parcels changed or removed
-- by a parcel-set replacement).
DELETE FROM {schema}.{part} WHERE pid = ANY (%(pids)s::int[])
