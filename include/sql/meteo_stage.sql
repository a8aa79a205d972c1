-- Staging table of one weather import (dropped at commit).
CREATE TEMP TABLE meteo_stage (pid integer, cell text, meteo_date date NOT NULL, tmin real, tmax real,
                               tmean real, prec real) ON COMMIT DROP
