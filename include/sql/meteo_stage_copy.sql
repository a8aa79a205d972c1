COPY meteo_stage (pid, cell, meteo_date, tmin, tmax, tmean, prec) FROM STDIN
