-- Parcel viewer: settings of a summary refresh transaction (one pass over a year of sigs/hists).
SELECT set_config('statement_timeout', %(timeout)s, true), set_config('work_mem', %(work_mem)s, true)
