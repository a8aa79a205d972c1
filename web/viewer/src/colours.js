// Colour scales of the map's attributes (MapLibre style expressions) and their legends.

// 12 qualitative colours (ColorBrewer Paired, reordered so that neighbours differ), "other" grey
export const CROP_COLOURS = ["#33a02c", "#ff7f00", "#1f78b4", "#e31a1c", "#6a3d9a", "#b15928",
  "#b2df8a", "#fdbf6f", "#a6cee3", "#fb9a99", "#cab2d6", "#ffff99"];
const OTHER = "#c8c8c8";
const NONE = "#e4e4e4";
// viridis at 6 stops (perceptually uniform, readable by colour-blind users)
const VIRIDIS = ["#440154", "#414487", "#2a788e", "#22a884", "#7ad151", "#fde725"];
const REDS = ["#fee5d9", "#fcae91", "#fb6a4a", "#de2d26", "#a50f15"];

function ramp(attr, max, colours) {
  const stops = [];
  colours.forEach((c, i) => stops.push((max * i) / (colours.length - 1), c));
  return ["case", ["==", ["get", attr], null], NONE,
    ["interpolate", ["linear"], ["to-number", ["get", attr]], ...stops]];
}

// MapLibre fill-color expression and HTML legend of an attribute
export function scale(attr, info, year, seenMax = null) {
  const label = info.attributes[attr]?.label || attr;
  const s2 = info.years?.[year]?.s2?.scenes || 0;
  if (attr === "crop") {
    const crops = info.crops || [];
    const expr = crops.length
      ? ["match", ["coalesce", ["get", "crop"], ""], ...crops.flatMap((c, i) => [c.value, CROP_COLOURS[i]]), OTHER]
      : OTHER;
    const rows = crops.map((c, i) => swatch(CROP_COLOURS[i], `${c.value} (${c.parcels})`));
    rows.push(swatch(OTHER, crops.length ? "other / none" : `no crop column in the AOI file`));
    return { expr, legend: title(label) + rows.join("") };
  }
  if (attr === "last_clear") {
    const expr = ["case", ["==", ["get", attr], null], NONE,
      ["interpolate", ["linear"], ["get", attr], 1, VIRIDIS[0], 73, VIRIDIS[1], 146, VIRIDIS[2],
        219, VIRIDIS[3], 292, VIRIDIS[4], 366, VIRIDIS[5]]];
    return { expr, legend: title(`last cloud-free Sentinel-2 date in ${year}`) + gradient(VIRIDIS, "1 Jan", "31 Dec")
      + swatch(NONE, "none") };
  }
  if (attr === "quarantined") {
    const expr = ["case", ["==", ["get", attr], null], NONE,
      ["step", ["get", attr], "#d9e6ee", 1, REDS[1], 2, REDS[2], 4, REDS[3], 8, REDS[4]]];
    return { expr, legend: title(`quarantined scenes of ${year} touching the parcel`)
      + swatch("#d9e6ee", "none") + swatch(REDS[1], "1") + swatch(REDS[2], "2-3") + swatch(REDS[3], "4-7")
      + swatch(REDS[4], "8 or more") };
  }
  // counts of Sentinel-2 dates: 0 .. the largest count of the parcels loaded (else the year's S2 scenes)
  const max = Math.max(1, seenMax ?? s2);
  const expr = ["case", ["==", ["get", attr], 0], "#f3f3f3", ramp(attr, max, VIRIDIS)];
  return { expr, legend: title(`${label}, ${year}`) + gradient(VIRIDIS, "1", `${max}`)
    + swatch("#f3f3f3", "none")
    + `<div class="small muted">scale: up to the largest value of the parcels loaded</div>` };
}

function esc(s) {
  return String(s).replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
}
function title(t) {
  return `<div class="title">${esc(t)}</div>`;
}
function swatch(colour, text) {
  return `<div class="row"><span class="sw" style="background:${colour}"></span><span>${esc(text)}</span></div>`;
}
function gradient(colours, lo, hi) {
  return `<div class="ramp" style="background:linear-gradient(to right,${colours.join(",")})"></div>`
    + `<div class="ends"><span>${esc(lo)}</span><span>${esc(hi)}</span></div>`;
}
export { esc };
