"""Parsers of catalogue responses: resto GeoJSON, Atom/OpenSearch feeds, STAC items, OData pages.

They only take a document apart into :class:`~.records.RawRecord`; nothing is converted or
checked here (:func:`~.records.normalise` does that, per record). Only a document that
cannot be read as a whole (not JSON/XML, not a FeatureCollection or Atom feed) raises
:class:`~cbm_ops.errors.HarvestError`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import shapely
from lxml import etree

from ..errors import HarvestError, NotCardError, RecordError
from .records import AtomGeometry, Page, RawRecord, _show

# Product types harvested: S2 L2A and the S1 CARD types (OData productType attribute). A
# record of another type (AUX, L1C, GRD ...) is a not_card record before its name is parsed
# (S1 AUX names do not follow the product naming).
CARD_PRODUCT_TYPES = frozenset({"S2MSI2A", "CARD-BS", "CARD-COH6"})


def _feature_record(f: Any, *, title_keys: tuple[str, ...], start_keys: tuple[str, ...]) -> RawRecord:
    """One GeoJSON feature (resto or STAC) as a RawRecord; nothing is converted here."""
    if not isinstance(f, dict):
        return RawRecord(title="?", start=None, footprint=None,
                         problem=RecordError("feature is not a JSON object", "feature", _show(f)))
    p = f.get("properties")
    fid = f.get("id")
    if not isinstance(p, dict):
        return RawRecord(title=str(fid or "?"), start=None, footprint=None, catalogue_id=fid,
                         problem=RecordError("feature has no properties object", "properties", _show(p)))
    title = next((p[k] for k in title_keys if p.get(k)), None) or fid or ""
    start_key = next((k for k in start_keys if p.get(k) not in (None, "")), start_keys[0])
    return RawRecord(title=title if isinstance(title, str) else str(title), start=p.get(start_key),
                     footprint=f.get("geometry"), properties=p, catalogue_id=fid, start_field=start_key)


def _opt_int(doc: dict[str, Any], key: str, what: str) -> int | None:
    v = doc.get(key)
    if v is None:
        return None
    try:
        return int(v)
    except (TypeError, ValueError, OverflowError):
        raise HarvestError(f"{what}: {key} is not a number: {_show(v)}") from None


def parse_resto_json(doc: Any) -> Page:
    """Parse a resto GeoJSON search response (CDSE / CREODIAS finder).

    Records are taken apart only; :func:`normalise` checks their fields.

    Raises
    ------
    HarvestError
        If the document is not a FeatureCollection (or its paging fields are unreadable).
    """
    if not isinstance(doc, dict) or doc.get("type") != "FeatureCollection":
        raise HarvestError(f"not a resto FeatureCollection: {str(doc)[:200]}")
    props = doc.get("properties") or {}
    if not isinstance(props, dict):
        raise HarvestError(f"resto response properties is not an object: {_show(props)}")
    feats = doc.get("features") or []
    if not isinstance(feats, list):
        raise HarvestError(f"resto response features is not a list: {_show(feats)}")
    records = [_feature_record(f, title_keys=("title",), start_keys=("startDate",)) for f in feats]
    links = props.get("links") or []
    next_url = next((lk.get("href") for lk in links if isinstance(lk, dict) and lk.get("rel") == "next"), None)
    return Page(records=records, total=_opt_int(props, "totalResults", "resto response"),
                items_per_page=_opt_int(props, "itemsPerPage", "resto response"), next_url=next_url)


def _local(el: etree._Element) -> str:
    return etree.QName(el).localname


def parse_atom(content: bytes) -> Page:
    """Parse an Atom OpenSearch feed (resto ``search.atom`` and DIAS variants).

    Footprints come from ``georss:polygon``, ``georss:where/gml:Polygon//gml:posList`` or
    ``georss:box`` (all lat/lon order); the start time from ``gml:beginPosition``,
    ``*:sensingStartDate``, ``*:startDate``, else ``dc:date`` or ``published`` (a
    publication date is caught by the date check of :func:`normalise`). Other leaf elements
    become properties by local name (``cloudCover``, ``orbitDirection``,
    ``productIdentifier``...). Fields are converted by :func:`normalise`.

    Raises
    ------
    HarvestError
        If the content is not XML, not an Atom feed, or its paging fields are unreadable.
    """
    try:
        root = etree.fromstring(content, parser=etree.XMLParser(resolve_entities=False, no_network=True))
    except etree.XMLSyntaxError as exc:
        raise HarvestError(f"catalogue answered invalid XML: {exc}") from None
    if root is None or _local(root) != "feed":
        raise HarvestError(f"not an Atom feed: <{_local(root) if root is not None else ''}>")
    head: dict[str, Any] = {}
    next_url = None
    records = []
    for el in root:
        tag = _local(el) if isinstance(el.tag, str) else ""
        if tag in ("totalResults", "itemsPerPage"):
            head[tag] = (el.text or "").strip()
        elif tag == "link" and el.get("rel") == "next":
            next_url = el.get("href")
        elif tag == "entry":
            props: dict[str, Any] = {}
            geom: AtomGeometry | None = None
            start = None
            start_field = "beginPosition"
            for sub in el.iter():
                if not isinstance(sub.tag, str):
                    continue
                name = _local(sub)
                text = (sub.text or "").strip()
                if name in ("polygon", "posList", "box") and geom is None:
                    geom = AtomGeometry(name, text)
                elif name in ("beginPosition", "sensingStartDate", "startDate") and start is None:
                    start, start_field = text, name
                elif len(sub) == 0 and text and name not in props:
                    props[name] = text
            if start is None:
                for k in ("date", "published"):
                    if props.get(k):
                        start, start_field = props[k], k
                        break
            title = props.get("title") or props.get("identifier") or props.get("id") or ""
            records.append(RawRecord(title=title, start=start, footprint=geom, properties=props,
                                     catalogue_id=props.get("id"), start_field=start_field))
    return Page(records=records, total=_opt_int(head, "totalResults", "Atom feed"),
                items_per_page=_opt_int(head, "itemsPerPage", "Atom feed"), next_url=next_url)


def stac_item_record(f: Any, catalogue: str = "", collections: frozenset[str] | None = None) -> RawRecord:
    """One STAC item of Sentinel-2 L2A as a RawRecord, with its band assets.

    The product name comes from ``s2:product_uri`` (Earth Search, Planetary Computer: their
    item ids are not product names) or ``sentinel:product_id``, else the item ``id`` (CDSE:
    the SAFE name without ``.SAFE``); the date from ``datetime`` (else ``start_datetime``).
    The product identifier is the ``/eodata`` SAFE path of ``s3://eodata`` hrefs (CDSE), else
    ``stac:<collection>/<id>`` with the COG hrefs in ``assets`` (:mod:`.assets`). An item of
    a collection not in ``collections`` carries a :class:`NotCardError` (Earth Search answered
    S1 GRD, L1C and Landsat items to a search without collections).
    """
    from . import assets as assets_mod

    rec = _feature_record(f, title_keys=("s2:product_uri", "sentinel:product_id"),
                          start_keys=("datetime", "start_datetime"))
    if rec.problem is not None or not isinstance(f, dict):
        return rec
    coll = f.get("collection")
    if collections is not None and coll not in collections:
        rec.problem = NotCardError(f"collection {coll} was not asked for", "collection", coll)
        return rec
    amap = assets_mod.asset_map(f, catalogue)
    eodata = assets_mod.eodata_path(amap)
    if eodata is not None:
        rec.properties = {**rec.properties, "productIdentifier": eodata}
    elif assets_mod.is_cog_item(amap):
        rec.properties = {**rec.properties, "productIdentifier": f"stac:{coll}/{f.get('id')}"}
    rec.assets = amap if len(amap) > 1 else None
    return rec


def parse_stac(doc: dict[str, Any], catalogue: str = "", collections: frozenset[str] | None = None) -> Page:
    """Parse a STAC Item or ItemCollection (FeatureCollection) of Sentinel-2 L2A items
    (:func:`stac_item_record`); ``total`` is ``numberMatched`` (or ``context.matched``) when
    the page reports it."""
    feats = doc.get("features") if doc.get("type") == "FeatureCollection" else [doc]
    if not isinstance(feats, list):
        raise HarvestError(f"STAC features is not a list: {_show(feats)}")
    records = [stac_item_record(f, catalogue, collections) for f in feats]
    c_raw, l_raw = doc.get("context"), doc.get("links")
    ctx: dict[str, Any] = c_raw if isinstance(c_raw, dict) else {}
    total = doc.get("numberMatched", ctx.get("matched"))
    links: list[Any] = l_raw if isinstance(l_raw, list) else []
    nxt = next((lk for lk in links if isinstance(lk, dict) and lk.get("rel") == "next"), None)
    return Page(records=records, total=total if isinstance(total, int) else None, items_per_page=None,
                next_url=json.dumps(nxt, sort_keys=True) if nxt else None)


def _odata_footprint(p: dict[str, Any]) -> Any:
    """``GeoFootprint`` (GeoJSON) if present, else ``Footprint``
    (``geography'SRID=4326;POLYGON ((lon lat, ...))'``) as a shapely geometry, else the text
    as written (:func:`~.records.footprint_of` reports it)."""
    geo = p.get("GeoFootprint")
    if isinstance(geo, dict):
        return geo
    text = p.get("Footprint")
    if not isinstance(text, str) or not text:
        return None
    wkt = text.strip()
    if wkt.lower().startswith("geography'"):
        wkt = wkt[len("geography'"):].rstrip("'")
    if wkt.upper().startswith("SRID="):
        wkt = wkt.split(";", 1)[-1]
    try:
        return shapely.from_wkt(wkt)
    except shapely.errors.GEOSException:
        return text


def _odata_record(p: Any, wanted: frozenset[str]) -> RawRecord:
    """One OData product (``$expand=Attributes``) as a RawRecord.

    Attributes become properties by ``Name``; ``S3Path`` is the product identifier;
    ``ModificationDate``, ``PublicationDate`` and ``Online`` are kept. A product whose
    ``productType`` is not in ``wanted`` carries a :class:`NotCardError`.
    """
    if not isinstance(p, dict):
        return RawRecord(title="?", start=None, footprint=None,
                         problem=RecordError("product is not a JSON object", "product", _show(p)))
    props: dict[str, Any] = {}
    for a in p.get("Attributes") or []:
        if isinstance(a, dict) and isinstance(a.get("Name"), str):
            props[a["Name"]] = a.get("Value")
    for k in ("S3Path", "ModificationDate", "PublicationDate", "Online"):
        if k in p:
            props[k] = p[k]
    if isinstance(p.get("S3Path"), str):
        props["productIdentifier"] = p["S3Path"]
    c_raw = p.get("ContentDate")
    content: dict[str, Any] = c_raw if isinstance(c_raw, dict) else {}
    name = p.get("Name")
    title = name if isinstance(name, str) else str(name or p.get("Id") or "")
    problem = None
    ptype = props.get("productType")
    if ptype is not None and str(ptype) not in wanted:
        problem = NotCardError(f"not a harvested product type ({ptype})", "productType", ptype)
    return RawRecord(title=title, start=content.get("Start"), footprint=_odata_footprint(p),
                     properties=props, catalogue_id=p.get("Id"), start_field="ContentDate/Start",
                     problem=problem)


def parse_odata(doc: Any, wanted: frozenset[str] = CARD_PRODUCT_TYPES) -> Page:
    """Parse an OData ``Products`` page (CDSE, CREODIAS datahub).

    ``@odata.context`` is ignored (three forms were seen: ``$metadata#Products(Attributes())``,
    ``...(Attributes(),Assets())``, ``...(Attributes())(Assets())``); ``@odata.count`` is
    the total (first page only, with ``$count=true``), ``@odata.nextLink`` the next page.

    Raises
    ------
    HarvestError
        If the document has no ``value`` list, or its paging fields are unreadable.
    """
    if not isinstance(doc, dict) or not isinstance(doc.get("value"), list):
        raise HarvestError(f"not an OData Products page (no value list): {str(doc)[:200]}")
    records = [_odata_record(p, wanted) for p in doc["value"]]
    nxt = doc.get("@odata.nextLink")
    if nxt is not None and not isinstance(nxt, str):
        raise HarvestError(f"OData page: @odata.nextLink is not a URL: {_show(nxt)}")
    return Page(records=records, total=_opt_int(doc, "@odata.count", "OData page"), items_per_page=None,
                next_url=nxt)


def is_odata(doc: Any) -> bool:
    """Whether a JSON document is an OData Products page (a ``value`` list of products)."""
    return (isinstance(doc, dict) and isinstance(doc.get("value"), list)
            and all(isinstance(p, dict) and "Name" in p and "ContentDate" in p for p in doc["value"][:5]))


def parse_file(path: Path) -> Page:
    """Parse a saved response file by its content (resto JSON, STAC, OData page, or Atom XML).

    Raises
    ------
    HarvestError
        If the file is neither JSON nor XML of a known kind.
    """
    data = path.read_bytes()
    if data.lstrip()[:1] == b"<":
        return parse_atom(data)
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise HarvestError(f"not JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise HarvestError(f"not a JSON object: {_show(doc)}")
    if is_odata(doc):
        return parse_odata(doc)
    feats = doc.get("features") if doc.get("type") == "FeatureCollection" else [doc]
    if isinstance(feats, list) and feats and isinstance(feats[0], dict) and "stac_version" in feats[0]:
        return parse_stac(doc)
    return parse_resto_json(doc)

