-- COPY of a scene's SCL histograms straight into its partition of hists.
COPY {schema}.{part} (pid, obsid, hist) FROM STDIN
