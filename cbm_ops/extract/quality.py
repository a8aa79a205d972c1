"""Quality gate: plausibility checks of a scene stage after extraction, before commit.

A broken product (an all-zero or truncated band, random bytes, a footprint it does not
fill) must not land as ordinary rows. After the statistics of a stage are computed and
before anything is written, :func:`evaluate` runs the checks below on them; a stage that
fails one is stored as status ``Quarantined`` with the reason (``scene_stages.last_error``)
and the measured values (``scene_stages.quality``), and none of its rows are written. An
operator who finds the product fine accepts it with ``cbm release --obsid N``: the stage
is extracted again with the gate recorded but not enforced.

Checks (thresholds: the AOI file's ``quality`` section, :class:`cbm_ops.config.QualityConfig`):

``coverage``
    Parcels the footprint implies: parcels of the index with at least one pixel whose
    pixel centroid lies inside the image and inside the catalogue footprint shrunk by
    ``coverage_margin_m``. Covered: those with at least one valid pixel. Fails when
    ``covered / expected < min_coverage`` for a band, with at least
    ``min_expected_parcels`` expected (fewer: not checked). Catches all-nodata or
    all-zero bands (zero is S2/S1 nodata), truncated files that GDAL zero-fills, and
    products that do not fill their footprint. Scenes that merely graze the AOI have no
    expected parcels: they end ``No parcels`` as before.
``range``
    Physically possible values, per parcel with data: S2 DN (before BOA_ADD_OFFSET) p50
    in ``[1, s2_max_dn]``; CARD-BS gamma0 (linear power) min >= 0 and p50 <=
    ``bs_max_linear``; CARD-COH6 coherence min >= 0 and max <= 1; SCL classes 0-11. Fails
    when more than ``max_out_of_range`` of the parcels with data are out of range (or
    not finite). Catches overwritten files (random bytes decode to negative powers,
    coherences above 1, DN near 32768, classes above 11).
``nan``
    NaN pixels in the decoded window (float bands): fails above ``max_nan_fraction``.
``constant``
    Parcels (>= 4 valid pixels) with zero spread: fails when more than ``max_constant`` of
    them are constant (a band filled with one value). Not for SCL.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..config import AoiConfig

S2_MAX_CLASS = 11          # SCL classes 0-11 (ESA L2A product specification)


@dataclass
class BandCheck:
    """What the gate measured on one band (JSON-able)."""

    band: str
    expected: int = 0
    covered: int = 0
    with_data: int = 0
    out_of_range: int = 0
    constant: int = 0
    nan_fraction: float = 0.0

    @property
    def coverage(self) -> float | None:
        return self.covered / self.expected if self.expected else None


@dataclass
class QualityResult:
    """The gate's verdict on a scene stage."""

    passed: bool
    reason: str = ""
    bands: list[BandCheck] = field(default_factory=list)
    released: bool = False

    def as_json(self, cfg: AoiConfig) -> dict[str, Any]:
        qc = cfg.quality
        return {"passed": self.passed, "reason": self.reason or None, "released_by_operator": self.released,
                "bands": [b.__dict__ | {"coverage": None if b.coverage is None else round(b.coverage, 4)}
                          for b in self.bands],
                "thresholds": qc.model_dump()}


def expected_parcels(idx, image_bounds: tuple[float, float, float, float], footprint_utm, margin_m: float
                     ) -> np.ndarray:
    """Parcels a scene should cover: bool mask, shape (P,), over the index's parcels.

    Parameters
    ----------
    idx : cbm_ops.grid.index.ParcelIndex
        Index of the band's grid (``centroids()`` in map units of the grid's CRS).
    image_bounds : (minx, miny, maxx, maxy)
        The image's extent in metres of the grid's CRS.
    footprint_utm : shapely geometry or None
        Catalogue footprint in the grid's CRS; None: the image extent only.
    margin_m : float
        The footprint is shrunk by this much (metres), so parcels on its edge do not count.
    """
    import shapely

    x, y = idx.centroids()
    minx, miny, maxx, maxy = image_bounds
    inside = (idx.npix > 0) & (x > minx + margin_m) & (x < maxx - margin_m) & \
        (y > miny + margin_m) & (y < maxy - margin_m)
    if footprint_utm is not None and inside.any():
        shrunk = shapely.buffer(footprint_utm, -margin_m) if margin_m > 0 else footprint_utm
        if shrunk.is_empty:
            return np.zeros_like(inside)
        sel = np.flatnonzero(inside)
        inside[sel] = shapely.contains_xy(shrunk, x[sel], y[sel])
    return inside


def check_stats_band(cfg: AoiConfig, card: str, band: str, st: np.ndarray, expected: np.ndarray,
                     nan_fraction: float) -> BandCheck:
    """Measure one statistics band (raw values, before any offset).

    Parameters
    ----------
    st : float64 ndarray, shape (P, 8)
        :func:`cbm_ops.grid.kernels.parcel_stats` (count, mean, std, min, max, p25, p50, p75).
    expected : bool ndarray, shape (P,)
        :func:`expected_parcels`.
    """
    qc = cfg.quality
    valid = st[:, 0] > 0
    b = BandCheck(band=band, expected=int(expected.sum()), covered=int((valid & expected).sum()),
                  with_data=int(valid.sum()), nan_fraction=round(float(nan_fraction), 6))
    if not valid.any():
        return b
    s = st[valid]
    mn, mx, p50 = s[:, 3], s[:, 4], s[:, 6]
    finite = np.isfinite(s[:, 1:]).all(axis=1)
    if card == "s2":
        bad = ~finite | (p50 < 1) | (p50 > qc.s2_max_dn)
    elif card == "bs":
        bad = ~finite | (mn < 0) | (p50 > qc.bs_max_linear)
    else:
        bad = ~finite | (mn < 0) | (mx > 1.0 + 1e-6)
    b.out_of_range = int(bad.sum())
    b.constant = int(((s[:, 0] >= 4) & (s[:, 2] == 0)).sum())
    return b


def check_hist_band(cfg: AoiConfig, counts: np.ndarray, expected: np.ndarray) -> BandCheck:
    """Measure the SCL band from its class counts, shape (P, nclasses)."""
    valid = counts.sum(axis=1) > 0
    b = BandCheck(band="SCL", expected=int(expected.sum()), covered=int((valid & expected).sum()),
                  with_data=int(valid.sum()))
    if counts.shape[1] > S2_MAX_CLASS + 1:
        b.out_of_range = int((counts[:, S2_MAX_CLASS + 1:].sum(axis=1) > 0).sum())
    return b


def evaluate(cfg: AoiConfig, bands: list[BandCheck], *, released: bool = False) -> QualityResult:
    """The verdict over a stage's bands: the first failed check names the reason."""
    qc = cfg.quality
    res = QualityResult(passed=True, bands=bands, released=released)
    if not qc.enabled:
        return res
    reasons = []
    for b in bands:
        if b.expected >= qc.min_expected_parcels and b.coverage is not None and b.coverage < qc.min_coverage:
            reasons.append(f"{b.band}: {b.covered} of {b.expected} parcels inside the footprint have valid "
                           f"pixels ({b.coverage:.0%} < {qc.min_coverage:.0%}): empty, zero-filled or "
                           "truncated band")
        if b.with_data and b.out_of_range / b.with_data > qc.max_out_of_range:
            reasons.append(f"{b.band}: {b.out_of_range} of {b.with_data} parcels have physically impossible "
                           f"values ({b.out_of_range / b.with_data:.1%} > {qc.max_out_of_range:.1%})")
        if b.nan_fraction > qc.max_nan_fraction:
            reasons.append(f"{b.band}: {b.nan_fraction:.2%} of the pixels are NaN (> {qc.max_nan_fraction:.2%})")
        if b.band != "SCL" and b.with_data >= qc.min_expected_parcels and \
                b.constant / b.with_data > qc.max_constant:
            reasons.append(f"{b.band}: {b.constant} of {b.with_data} parcels are constant (band filled "
                           "with one value?)")
    if reasons:
        res.passed = False
        res.reason = "; ".join(reasons)[:1900]
    return res
