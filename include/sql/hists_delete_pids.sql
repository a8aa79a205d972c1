-- Remove the SCL histograms of some parcels from one partition (parcel-set replacement).
DELETE FROM {schema}.{part} WHERE pid = ANY (%(pids)s::int[])
