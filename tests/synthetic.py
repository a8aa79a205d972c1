"""SYNTHETIC Sentinel products in the production layout, with known pixel values.

Used where the real sample cannot exercise a code path: Sentinel-2 baseline >= 04.00
(BOA_ADD_OFFSET), CARD-COH6, corrupt files. Names follow the real naming scheme; the
values are generated.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from pathlib import Path

import numpy as np
import rasterio
from affine import Affine
from pyproj import CRS

from cbm_ops.config import S2_NATIVE_RES

S2_XML = """<?xml version="1.0" encoding="UTF-8"?>
<n1:Level-2A_User_Product xmlns:n1="https://psd-14.sentinel2.eo.esa.int/PSD/User_Product_Level-2A.xsd">
  <n1:General_Info>
    <Product_Info>
      <PRODUCT_URI>{name}.SAFE</PRODUCT_URI>
      <PROCESSING_BASELINE>{baseline}</PROCESSING_BASELINE>
    </Product_Info>
    <Product_Image_Characteristics>
      <QUANTIFICATION_VALUES_LIST>
        <BOA_QUANTIFICATION_VALUE unit="none">10000</BOA_QUANTIFICATION_VALUE>
      </QUANTIFICATION_VALUES_LIST>
      {offsets}
      <Spectral_Information_List>{spectral}</Spectral_Information_List>
    </Product_Image_Characteristics>
  </n1:General_Info>
</n1:Level-2A_User_Product>
"""
PHYSICAL = ("B1", "B2", "B3", "B4", "B5", "B6", "B7", "B8", "B8A", "B9", "B10", "B11", "B12")


def s2_name(t: dt.datetime, baseline: str = "05.10", tile: str = "31UDS", mission: str = "S2B") -> str:
    return f"{mission}_MSIL2A_{t:%Y%m%dT%H%M%S}_N{baseline.replace('.', '')}_R051_T{tile}_{t:%Y%m%d}T120000"


def write_s2_safe(eodata: Path, t: dt.datetime, x0: float, y0: float, bands: dict[str, np.ndarray],
                  *, baseline: str = "05.10", offset: int | None = -1000, tile: str = "31UDS",
                  epsg: int = 32631) -> str:
    """Write a SAFE product; 10 m and 20 m bands on the grid with upper-left (x0, y0)."""
    name = s2_name(t, baseline, tile)
    safe = eodata / f"Sentinel-2/MSI/L2A/{t:%Y/%m/%d}/{name}.SAFE"
    gran = safe / "GRANULE" / f"L2A_T{tile}_A012345_{t:%Y%m%dT%H%M%S}" / "IMG_DATA"
    offs = ""
    if offset is not None:
        offs = "<BOA_ADD_OFFSET_VALUES_LIST>" + "".join(
            f'<BOA_ADD_OFFSET band_id="{i}">{offset}</BOA_ADD_OFFSET>' for i in range(13)) + \
            "</BOA_ADD_OFFSET_VALUES_LIST>"
    spectral = "".join(f'<Spectral_Information bandId="{i}" physicalBand="{b}"/>' for i, b in enumerate(PHYSICAL))
    safe.mkdir(parents=True)
    (safe / "MTD_MSIL2A.xml").write_text(S2_XML.format(name=name, baseline=baseline, offsets=offs,
                                                       spectral=spectral))
    for band, arr in bands.items():
        res = S2_NATIVE_RES[band]
        d = gran / f"R{res}m"
        d.mkdir(parents=True, exist_ok=True)
        path = d / f"T{tile}_{t:%Y%m%dT%H%M%S}_{band}_{res}m.jp2"
        with rasterio.open(path, "w", driver="JP2OpenJPEG", width=arr.shape[1], height=arr.shape[0], count=1,
                           dtype=arr.dtype, crs=f"EPSG:{epsg}", transform=Affine(res, 0, x0, 0, -res, y0),
                           QUALITY=100, REVERSIBLE="YES", YCBCR420="NO") as ds:
            ds.write(arr, 1)
    return name


def s1_ref(t: dt.datetime, card: str = "CARD_BS", absorb: int = 21474) -> str:
    stop = t + dt.timedelta(seconds=25)
    return f"S1A_IW_GRDH_1SDV_{t:%Y%m%dT%H%M%S}_{stop:%Y%m%dT%H%M%S}_{absorb:06d}_024F9D_E4C7_{card}"


def write_card_bs(eodata: Path, t: dt.datetime, x0: float, y0: float, res: float,
                  bands: dict[str, np.ndarray], epsg: int = 32631) -> str:
    """CARD-BS: ENVI float32, big-endian (byte order = 1) as SNAP writes it."""
    ref = s1_ref(t)
    data = eodata / f"Sentinel-1/SAR/CARD-BS/{t:%Y/%m/%d}/{ref}/{ref}.data"
    data.mkdir(parents=True)
    wkt = CRS.from_epsg(epsg).to_wkt("WKT1_ESRI")
    zone = epsg % 100
    for pol, arr in bands.items():
        arr.astype(">f4").tofile(data / f"Gamma0_{pol}.img")
        (data / f"Gamma0_{pol}.hdr").write_text(
            "ENVI\ndescription = {Sentinel-1 CARD-BS Gamma0 - Unit: linear}\n"
            f"samples = {arr.shape[1]}\nlines = {arr.shape[0]}\nbands = 1\nheader offset = 0\n"
            "file type = ENVI Standard\ndata type = 4\ninterleave = bsq\nbyte order = 1\n"
            f"band names = {{ Gamma0_{pol} }}\n"
            f"map info = {{UTM,1,1,{x0},{y0},{res},{res},{zone},North,WGS-84,units=Meters}}\n"
            f"coordinate system string = {{{wkt}}}\n")
    return ref


def write_card_coh6(eodata: Path, t: dt.datetime, x0: float, y0: float, res: float,
                    vv: np.ndarray, vh: np.ndarray, epsg: int = 32631) -> str:
    ref = s1_ref(t, "CARD_COH6")
    d = eodata / f"Sentinel-1/SAR/CARD-COH6/{t:%Y/%m/%d}/{ref}"
    d.mkdir(parents=True)
    with rasterio.open(d / f"{ref}.tif", "w", driver="GTiff", width=vv.shape[1], height=vv.shape[0], count=2,
                       dtype="float32", crs=f"EPSG:{epsg}", transform=Affine(res, 0, x0, 0, -res, y0)) as ds:
        ds.write(vv.astype(np.float32), 1)
        ds.write(vh.astype(np.float32), 2)
    return ref


def resto_feature(title: str, t: dt.datetime, product_type: str, ident: str, lonlat_box) -> dict:
    w, s, e, n = lonlat_box
    return {"type": "Feature", "id": str(uuid.uuid5(uuid.NAMESPACE_URL, title)),
            "geometry": {"type": "Polygon", "coordinates": [[[w, s], [e, s], [e, n], [w, n], [w, s]]]},
            "properties": {"title": title, "startDate": t.isoformat() + "Z", "completionDate": t.isoformat() + "Z",
                           "productType": product_type, "productIdentifier": ident}}


def write_catalogue(path: Path, features: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"type": "FeatureCollection",
                                "properties": {"totalResults": len(features), "itemsPerPage": len(features),
                                               "links": []},
                                "features": features}))
