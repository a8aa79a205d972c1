-- Per scene with data: its card and the bands it has rows for (hists counted as SCL).
SELECT d.id, d.card, array_agg(DISTINCT b.band ORDER BY b.band)
FROM {schema}.dias_catalogue d
JOIN (SELECT obsid, trim(band) AS band FROM {schema}.sigs GROUP BY 1, 2
      UNION ALL SELECT obsid, 'SCL' FROM {schema}.hists GROUP BY 1) b ON b.obsid = d.id
GROUP BY 1, 2
