-- Parcel viewer: the most frequent values of the crop column (the legend's categories).
SELECT p.{crop}::text AS crop, count(*) AS n
FROM {schema}.{parcels} p
WHERE p.{crop} IS NOT NULL
GROUP BY 1
ORDER BY 2 DESC, 1
LIMIT %(limit)s
