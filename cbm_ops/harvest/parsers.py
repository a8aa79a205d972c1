"""Parsers of catalogue responses: resto GeoJSON, Atom/OpenSearch feeds, STAC items.

They only take a document apart into :class:`~.records.RawRecord`; nothing is converted or
checked here (:func:`~.records.normalise` does that, per record). Only a document that
cannot be read as a whole (not JSON/XML, not a FeatureCollection or Atom feed) raises
:class:`~cbm_ops.errors.HarvestError`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from lxml import etree

from ..errors import HarvestError, RecordError
from .records import AtomGeometry, Page, RawRecord, _show


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


def parse_stac(doc: dict[str, Any]) -> Page:
    """Parse a STAC Item or ItemCollection of Sentinel-2 L2A items.

    The product name comes from ``s2:product_uri`` or ``sentinel:product_id``, the date
    from ``datetime`` (else ``start_datetime``). Fields are converted by :func:`normalise`.
    """
    feats = doc.get("features") if doc.get("type") == "FeatureCollection" else [doc]
    if not isinstance(feats, list):
        raise HarvestError(f"STAC features is not a list: {_show(feats)}")
    records = [_feature_record(f, title_keys=("s2:product_uri", "sentinel:product_id"),
                               start_keys=("datetime", "start_datetime")) for f in feats]
    return Page(records=records, total=len(records), items_per_page=None, next_url=None)


def parse_file(path: Path) -> Page:
    """Parse a saved response file by its content (resto JSON, STAC, or Atom XML).

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
    feats = doc.get("features") if doc.get("type") == "FeatureCollection" else [doc]
    if isinstance(feats, list) and feats and isinstance(feats[0], dict) and "stac_version" in feats[0]:
        return parse_stac(doc)
    return parse_resto_json(doc)

