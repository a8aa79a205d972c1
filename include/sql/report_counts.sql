SELECT (SELECT count(*) FROM {schema}.sigs), (SELECT count(*) FROM {schema}.hists)
