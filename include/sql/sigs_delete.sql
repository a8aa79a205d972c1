-- Remove the sigs rows of scenes for a set of bands, in one partition (all obsids in it).
DELETE FROM {schema}.{part} WHERE obsid = ANY (%(obsids)s::int[]) AND band = ANY (%(bands)s::text[])
