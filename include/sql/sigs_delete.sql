-- Remove the sigs rows of scenes for a set of bands.
DELETE FROM {schema}.sigs WHERE obsid = ANY (%(obsids)s::int[]) AND band = ANY (%(bands)s::text[])
