-- Remove the SCL histograms of scenes, in one partition (all obsids in it).
DELETE FROM {schema}.{part} WHERE obsid = ANY (%(obsids)s::int[])
