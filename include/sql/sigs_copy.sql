COPY {schema}.sigs (pid, obsid, band, count, mean, std, min, max, p25, p50, p75) FROM STDIN (FORMAT binary)
