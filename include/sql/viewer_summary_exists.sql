-- Parcel viewer: whether the summary tables exist in the AOI schema (%(name)s: "schema".viewer_summary_state).
SELECT to_regclass(%(name)s) IS NOT NULL
