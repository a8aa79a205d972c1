DELETE FROM {schema}.hists WHERE obsid = ANY (%(obsids)s::int[])
