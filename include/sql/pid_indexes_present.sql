SELECT to_regclass(%(sigs)s) IS NOT NULL AND to_regclass(%(hists)s) IS NOT NULL
