// The time-series chart of one parcel (Chart.js): NDVI with cloud-free and cloudy dates told
// apart and Sentinel-1 backscatter in dB, or any band's mean with its p25-p75 band. Hovering
// a point shows the observation's lineage; clicking it asks for its image chips.
import {
  Chart, LineController, LineElement, PointElement, LinearScale, TimeScale, Tooltip, Legend, Filler,
} from "chart.js";
import "chartjs-adapter-date-fns";
import { esc } from "./colours.js";

Chart.register(LineController, LineElement, PointElement, LinearScale, TimeScale, Tooltip, Legend, Filler);

const GREEN = "#2e9d3a", GREY = "#8a9096", ORANGE = "#ef7d00", BLUE = "#1f6fb4", PURPLE = "#8e44ad";
const BAND_FILL = "rgba(31, 111, 180, 0.18)";

// Observations (one per obsid) from parcelTimeSeries rows
export function observations(tsRows, card) {
  const byObs = new Map();
  for (const r of tsRows) {
    let o = byObs.get(r.obsid);
    if (!o) {
      o = { obsid: r.obsid, t: new Date(r.obstime + "Z"), obstime: r.obstime, card, datatake: r.datatake,
        ndvi: r.ndvi ?? null, cloudfree: r.cloudfree, tile: r.tile, epsg: r.epsg, reference: r.reference,
        orbit: r.relative_orbit, direction: r.orbit_direction, bands: {}, lineage: {} };
      byObs.set(r.obsid, o);
    }
    o.bands[r.band] = r;
    if (r.lineage) o.lineage[r.band] = r.lineage;
  }
  return [...byObs.values()].sort((a, b) => a.t - b.t);
}

const dB = (v) => (v !== null && v !== undefined && v > 0 ? 10 * Math.log10(v) : null);

export function seriesOptions(bands) {
  const opts = [{ value: "ndvi", label: "NDVI and Sentinel-1 VV/VH (dB)" }];
  for (const b of bands.s2 || []) opts.push({ value: `s2:${b}`, label: `Sentinel-2 ${b}: mean, p25-p75 (DN)` });
  for (const b of bands.bs || []) opts.push({ value: `bs:${b}`, label: `Sentinel-1 ${b.slice(0, 2)} backscatter: mean, p25-p75 (dB)` });
  for (const b of bands.c6 || []) opts.push({ value: `c6:${b}`, label: `Sentinel-1 ${b.slice(0, 2)} coherence: mean, p25-p75` });
  return opts;
}

function point(o, y) {
  return { x: o.t.getTime(), y, obs: o };
}

export function datasets(series, obs) {
  if (series === "ndvi") {
    const s2 = obs.s2 || [];
    const withNdvi = s2.filter((o) => o.ndvi !== null);
    const sets = [
      { label: "NDVI cloud-free (SCL)", data: withNdvi.filter((o) => o.cloudfree === true).map((o) => point(o, o.ndvi)),
        borderColor: GREEN, backgroundColor: GREEN, pointRadius: 3.5, pointHoverRadius: 6, borderWidth: 1.3,
        showLine: true, yAxisID: "y", order: 1 },
      { label: "NDVI cloudy (SCL 3, 8-11)", data: withNdvi.filter((o) => o.cloudfree === false).map((o) => point(o, o.ndvi)),
        borderColor: GREY, backgroundColor: "rgba(255,255,255,0.9)", pointRadius: 3.5, pointHoverRadius: 6,
        borderWidth: 1.2, showLine: false, yAxisID: "y", order: 2 },
    ];
    const noScl = withNdvi.filter((o) => o.cloudfree === null || o.cloudfree === undefined);
    if (noScl.length) {
      sets.push({ label: "NDVI, no SCL histogram", data: noScl.map((o) => point(o, o.ndvi)), borderColor: ORANGE,
        backgroundColor: ORANGE, pointStyle: "crossRot", pointRadius: 5, showLine: false, yAxisID: "y", order: 3 });
    }
    for (const [band, colour] of [["VVb", BLUE], ["VHb", PURPLE]]) {
      const pts = (obs.bs || []).filter((o) => o.bands[band]).map((o) => point(o, dB(o.bands[band].mean)))
        .filter((p) => p.y !== null);
      if (pts.length) {
        sets.push({ label: `S1 ${band.slice(0, 2)} (dB)`, data: pts, borderColor: colour, backgroundColor: colour,
          pointRadius: 1.6, pointHoverRadius: 5, borderWidth: 1, showLine: true, yAxisID: "y1", order: 4 });
      }
    }
    return sets;
  }
  const [card, band] = series.split(":");
  const f = card === "bs" ? dB : (v) => v;
  const list = (obs[card] || []).filter((o) => o.bands[band] && o.bands[band].mean !== null);
  const pts = (k) => list.map((o) => point(o, f(o.bands[band][k])));
  const sets = [
    { label: "p25", data: pts("p25"), borderWidth: 0, pointRadius: 0, pointHitRadius: 0, fill: false,
      yAxisID: "y", order: 5 },
    { label: "p25-p75 of the parcel's pixels", data: pts("p75"), borderWidth: 0, pointRadius: 0, pointHitRadius: 0,
      backgroundColor: BAND_FILL, fill: "-1", yAxisID: "y", order: 5 },
  ];
  if (card === "s2") {
    sets.push(
      { label: `${band} mean, cloud-free`, data: list.filter((o) => o.cloudfree !== false).map((o) => point(o, o.bands[band].mean)),
        borderColor: BLUE, backgroundColor: BLUE, pointRadius: 3, pointHoverRadius: 6, borderWidth: 1.3, showLine: true,
        yAxisID: "y", order: 1 },
      { label: `${band} mean, cloudy`, data: list.filter((o) => o.cloudfree === false).map((o) => point(o, o.bands[band].mean)),
        borderColor: GREY, backgroundColor: "rgba(255,255,255,0.9)", pointRadius: 3, pointHoverRadius: 6,
        borderWidth: 1.2, showLine: false, yAxisID: "y", order: 2 });
  } else {
    sets.push({ label: `${band} mean${card === "bs" ? " (dB)" : ""}`, data: pts("mean"), borderColor: BLUE,
      backgroundColor: BLUE, pointRadius: 2.2, pointHoverRadius: 5, borderWidth: 1.2, showLine: true, yAxisID: "y",
      order: 1 });
  }
  return sets;
}

export function lineageText(o) {
  const lin = Object.values(o.lineage || {})[0];
  const parts = [`${o.obstime.replace("T", " ")} UTC`, `obsid ${o.obsid}`];
  if (o.tile) parts.push(`tile ${o.tile}`);
  if (o.orbit) parts.push(`orbit ${o.orbit} ${o.direction || ""}`.trim());
  if (o.reference) parts.push(o.reference);
  if (lin) {
    const l = [];
    if (lin.package_version) l.push(`cbm-airflow ${lin.package_version}`);
    if (lin.git_commit) l.push(`commit ${String(lin.git_commit).slice(0, 10)}`);
    if (lin.processing_baseline) l.push(`baseline ${lin.processing_baseline}`);
    if (lin.index_version) l.push(`index ${lin.index_version}`);
    if (lin.catalogue_source) l.push(`catalogue ${lin.catalogue_source}`);
    if (lin.boa_add_offset !== undefined && lin.boa_add_offset !== null) l.push(`BOA offset ${JSON.stringify(lin.boa_add_offset)}`);
    if (lin.all_touched !== undefined) l.push(`all_touched ${lin.all_touched}`);
    if (lin.extracted_at || lin.time) l.push(`extracted ${String(lin.extracted_at || lin.time).slice(0, 19)}`);
    parts.push("lineage: " + l.join(", "));
  } else {
    parts.push("lineage: not recorded");
  }
  return parts;
}

export function makeChart(canvas, { onHover, onClick }) {
  return new Chart(canvas, {
    type: "line",
    data: { datasets: [] },
    options: {
      animation: false,
      maintainAspectRatio: false,
      parsing: false,
      normalized: true,
      interaction: { mode: "nearest", intersect: true },
      plugins: {
        legend: { position: "bottom", labels: { boxWidth: 12, boxHeight: 8, font: { size: 11 },
          filter: (item) => item.text !== "p25" } },
        tooltip: {
          filter: (item) => item.dataset.label !== "p25" && item.raw && item.raw.obs,
          callbacks: {
            title: (items) => items.length ? items[0].raw.obs.obstime.replace("T", " ") + " UTC" : "",
            label: (item) => `${item.dataset.label}: ${item.parsed.y === null ? "-" : item.parsed.y.toFixed(3)}`,
            footer: (items) => {
              if (!items.length) return "";
              const o = items[0].raw.obs;
              const lines = [];
              if (o.cloudfree === true) lines.push("cloud-free (SCL)");
              else if (o.cloudfree === false) lines.push("cloudy (SCL 3, 8-11 in the parcel)");
              lines.push(...lineageText(o).slice(1, -1));        // the lineage itself is shown under the chart
              lines.push("click: image chips of this date");
              return lines;
            },
          },
        },
      },
      scales: {
        x: { type: "time", time: { unit: "month", tooltipFormat: "yyyy-MM-dd" }, ticks: { font: { size: 11 } } },
        y: { title: { display: true, text: "NDVI" }, min: -0.2, max: 1, ticks: { font: { size: 11 } } },
        y1: { position: "right", title: { display: true, text: "S1 backscatter (dB)" }, min: -30, max: 0,
          grid: { drawOnChartArea: false }, ticks: { font: { size: 11 } } },
      },
      onHover: (evt, elements, chart) => {
        const el = elements.find((e) => chart.data.datasets[e.datasetIndex].data[e.index]?.obs);
        canvas.style.cursor = el ? "pointer" : "default";
        if (el) onHover(chart.data.datasets[el.datasetIndex].data[el.index].obs);
      },
      onClick: (evt, elements, chart) => {
        const el = elements.find((e) => chart.data.datasets[e.datasetIndex].data[e.index]?.obs);
        if (el) onClick(chart.data.datasets[el.datasetIndex].data[el.index].obs);
      },
    },
  });
}

export function show(chart, series, obs, year) {
  chart.data.datasets = datasets(series, obs);
  const sc = chart.options.scales;
  if (year) {
    sc.x.min = new Date(Date.UTC(year, 0, 1)).getTime();
    sc.x.max = new Date(Date.UTC(year + 1, 0, 1)).getTime();
  }
  if (series === "ndvi") {
    Object.assign(sc.y, { min: -0.2, max: 1, title: { display: true, text: "NDVI" } });
    sc.y1.display = chart.data.datasets.some((d) => d.yAxisID === "y1");
  } else {
    const [card, band] = series.split(":");
    const text = card === "s2" ? `${band} (DN, reflectance x 10000)` : card === "bs" ? `${band.slice(0, 2)} gamma0 (dB)`
      : `${band.slice(0, 2)} coherence`;
    Object.assign(sc.y, { min: card === "c6" ? 0 : undefined, max: card === "c6" ? 1 : undefined,
      title: { display: true, text } });
    sc.y1.display = false;
  }
  chart.update();
}

export function describe(o) {
  return lineageText(o).map(esc).join(" · ");
}
