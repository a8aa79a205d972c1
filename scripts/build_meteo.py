"""Build include/meteo/demo_flanders_agera5.csv: the REAL daily AgERA5 weather of the demo patch.

Input: the WorldCereal NetCDF of the demo patch (the same patch as include/sample), from
GitHub WorldCereal/worldcereal-classification at commit 5db1e24d918f99e5b2471b826fbcb8fd2afea252::

    git -C <clone> show 5db1e24d918f99e5b2471b826fbcb8fd2afea252:tests/worldcerealtests/testresources/\\
        worldcerealtraining/00002806639B424A/AgERA5_DAILY_1000m_00002806639B424A_32631_2017-08-01_2018-11-30.nc \\
        > agera5.nc
    python scripts/build_meteo.py agera5.nc

Conversions only: temperature K -> degrees Celsius (- 273.15, rounded to 0.01), precipitation
flux mm/day unchanged; the day of each value from the file's ``timestamp`` axis (days since
2017-08-01); the file's one pixel (the patch, EPSG:32631 box 501360 5629040 502000 5629680)
becomes the grid cell, as an EPSG:4326 WKT polygon (the box's corners transformed with
pyproj). Two runs give identical files.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "include" / "meteo" / "demo_flanders_agera5.csv"
VARIABLES = {"tmin": "temperature_min", "tmax": "temperature_max", "tmean": "temperature_mean",
             "prec": "precipitation_flux"}


def cell_wkt(bounds: tuple[float, float, float, float], epsg: int) -> str:
    """The box's corners in EPSG:4326 as WKT with 7 decimals (~1 cm; the 640 m edges bend by
    far less in EPSG:4326, so no densification)."""
    import shapely
    from pyproj import Transformer

    box = shapely.box(*bounds)
    tr = Transformer.from_crs(epsg, 4326, always_xy=True)
    xs, ys = tr.transform(*shapely.get_coordinates(box).T)
    return shapely.to_wkt(shapely.Polygon(list(zip(xs, ys, strict=True))), rounding_precision=7)


def read(path: Path) -> tuple[list[dt.date], dict[str, list[float]], tuple[float, ...], int]:
    from osgeo import gdal

    gdal.UseExceptions()
    values, days = {}, None
    for col, var in VARIABLES.items():
        ds = gdal.Open(f'NETCDF:"{path}":{var}')
        md = ds.GetMetadata()
        start = dt.date.fromisoformat(md["timestamp#units"].split("since ")[1][:10])
        offsets = [int(x) for x in md["NETCDF_DIM_timestamp_VALUES"].strip("{}").split(",")]
        days = [start + dt.timedelta(days=o) for o in offsets]
        unit = md[f"{var}#units"]
        arr = ds.ReadAsArray().reshape(len(offsets))
        values[col] = [float(v) - 273.15 if unit == "K" else float(v) for v in arr]
        bounds = tuple(float(b) for b in md["NC_GLOBAL#bounds"].strip("{}").split(","))
        epsg = int(md["NC_GLOBAL#epsg"])
    assert days is not None
    return days, values, bounds, epsg


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("netcdf", type=Path)
    args = ap.parse_args(argv)
    days, values, bounds, epsg = read(args.netcdf)
    cell = cell_wkt(bounds, epsg)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    with open(OUT, "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["date", "tmin", "tmax", "tmean", "prec", "cell"])
        for i, day in enumerate(days):
            w.writerow([day.isoformat(), *(f"{values[c][i]:.2f}" for c in VARIABLES), cell])
    print(f"{OUT}: {len(days)} days {days[0]}..{days[-1]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
