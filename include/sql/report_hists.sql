SELECT h.pid, d.obstime, h.hist FROM {schema}.hists h JOIN {schema}.dias_catalogue d ON d.id = h.obsid
