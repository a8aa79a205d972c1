-- Parcel viewer: years with scenes per card, and how many of them have an extracted stage.
SELECT extract(year FROM d.obstime)::integer AS year, trim(d.card) AS card, count(*) AS scenes,
       count(*) FILTER (WHERE EXISTS (SELECT 1 FROM {schema}.scene_stages st
                                      WHERE st.obsid = d.id AND st.status = 'extracted')) AS extracted
FROM {schema}.dias_catalogue d
GROUP BY 1, 2
ORDER BY 1, 2
