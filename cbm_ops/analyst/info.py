"""What ``/query/info`` tells a client about the AOIs it may read (the JRC API's information page).

The JRC server builds it from its dataset keys ``<aoi>_<year>`` (ec-jrc/cbm
``api/scripts/info_page.py``); the ``cbm`` client's GUI reads ``aois.<aoi>.years`` (strings,
used in file paths) and the first key starting with ``id_examples`` (parcel ids shown and
put in its pid box; ec-jrc/cbm ``cbm/ipycbm/ipy_get/get_panel.py``). Here the years are the
AOI's campaign years, the examples its first parcel ids.
"""

from __future__ import annotations

from typing import Any

from ..config import AoiConfig
from ..db import q

EXAMPLE_PIDS = 5
SERVER = {"title": "RESTful API for CbM (cbm-airflow)",
          "description": "Parcel attributes, per-parcel Sentinel time series, image chips and weather in the shape "
                         "of the JRC RESTful API for Checks by Monitoring",
          "license": "see the cbm-airflow repository"}


def example_pids(conn, cfg: AoiConfig, limit: int = EXAMPLE_PIDS) -> list[str]:
    """The AOI's first ``limit`` parcel ids, as text (the JRC's ``id_examples``)."""
    cur = conn.execute(q("info_example_pids", schema=cfg.schema, parcels=cfg.parcels.table), {"limit": limit})
    return [str(r[0]) for r in cur]


def aoi_info(conn, cfg: AoiConfig, base: str) -> dict[str, Any]:
    """One AOI's entry of ``/query/info``.

    Parameters
    ----------
    base : str
        The API's URL ending with ``/`` (for ``request_examples``).

    Returns
    -------
    dict
        ``years`` (campaign years as strings), ``datasets`` (configured JRC ptypes),
        ``time_series`` (the AOI's cards), ``tms`` (configured background names),
        ``id_table_column`` (``ogc_fid``), ``id_examples_<last year>`` (parcel ids as text)
        and ``request_examples`` (URLs).
    """
    years = [str(y) for y in cfg.campaign_years()]
    pids = example_pids(conn, cfg)
    year, pid, a = years[-1], (pids[0] if pids else "1"), cfg.name
    query = f"{base}query/"
    examples = {"parcelByID": f"{query}parcelByID?aoi={a}&year={year}&pid={pid}&withGeometry=True",
                "parcelPeers": f"{query}parcelPeers?aoi={a}&year={year}&pid={pid}&distance=1000&max=10",
                "weatherTimeSeries": f"{query}weatherTimeSeries?aoi={a}&year={year}&pid={pid}"}
    for card in cfg.cards:
        examples[f"parcelTimeSeries_{card}"] = f"{query}parcelTimeSeries?aoi={a}&year={year}&pid={pid}&tstype={card}"
    if cfg.jrc.backgrounds:
        tms = sorted(cfg.jrc.backgrounds)[0]
        examples["backgroundByParcelID"] = (f"{query}backgroundByParcelID?aoi={a}&year={year}&pid={pid}"
                                            f"&tms={tms}&iformat=png")
    return {"description": cfg.description, "years": years, "datasets": sorted(cfg.jrc.ptypes),
            "time_series": list(cfg.cards), "tms": sorted(cfg.jrc.backgrounds), "id_table_column": "ogc_fid",
            f"id_examples_{year}": pids, "request_examples": examples}


def info_page(aois: dict[str, dict[str, Any]], base: str) -> dict[str, Any]:
    """The whole ``/query/info`` answer around the per-AOI entries (:func:`aoi_info`)."""
    return {"server": {**SERVER, "host": base.rstrip("/")},
            "helpers": {"documentation": "docs/analyst-api.md of cbm-airflow",
                        "information_page": f"{base}query/info", "swagger": f"{base}docs",
                        "openapi": f"{base}openapi.json"},
            "aois": aois}
