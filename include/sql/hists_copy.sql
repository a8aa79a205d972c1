COPY {schema}.hists (pid, obsid, hist) FROM STDIN
