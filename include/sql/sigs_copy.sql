-- Binary COPY of a scene stage's signatures straight into its partition of sigs.
COPY {schema}.{part} (pid, obsid, band, count, mean, std, min, max, p25, p50, p75) FROM STDIN (FORMAT binary)
