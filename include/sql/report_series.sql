-- Parcel time series of some bands: (pid, obstime, band, mean), by time.
SELECT s.pid, d.obstime, trim(s.band), s.mean
FROM {schema}.sigs s JOIN {schema}.dias_catalogue d ON d.id = s.obsid
WHERE s.band = ANY (%(bands)s::text[])
ORDER BY d.obstime
