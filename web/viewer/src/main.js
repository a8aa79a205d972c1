// CbM parcel viewer: map of an AOI's parcels (MapLibre GL JS, vector tiles made by PostGIS),
// coloured by a chosen attribute; a parcel's time series (Chart.js) with lineage on hover; image
// chips of the dates clicked. ?aoi=NAME&pid=N&year=Y opens a parcel.
import maplibregl from "maplibre-gl";
import "maplibre-gl/dist/maplibre-gl.css";
import "./viewer.css";
import { getJSON, rows, url, ApiError } from "./api.js";
import { scale, esc } from "./colours.js";
import { makeChart, observations, seriesOptions, show, describe } from "./timeseries.js";
import { addChipCard } from "./chips.js";

const $ = (id) => document.getElementById(id);
// ?aoi=&pid=&year=&attr= open a parcel; without them, what this browser showed last (the UI's
// Plugins page opens the viewer without parameters)
const SAVED = "cbm-viewer";
const params = new URLSearchParams(location.search.includes("aoi=") ? location.search
  : (() => { try { return localStorage.getItem(SAVED) || ""; } catch (_) { return ""; } })());
const state = {
  aoi: null, info: null, year: null, attr: params.get("attr") || "crop", pid: null, parcel: null, peers: [],
  obs: {}, series: "ndvi", loading: 0, errors: [],
};
// for the page tests and the curious: window.cbmViewer.map / .chart / .state
const app = { state, map: null, chart: null, ready: false, tilesLoaded: 0 };
window.cbmViewer = app;

function status(text, isError = false) {
  const s = $("status");
  s.textContent = text || "";
  s.style.color = isError ? "#ffb3b3" : "#ffd98a";
  if (isError) state.errors.push(text);
}

function syncUrl() {
  const p = new URLSearchParams();
  if (state.aoi) p.set("aoi", state.aoi);
  if (state.year) p.set("year", state.year);
  if (state.pid !== null) p.set("pid", state.pid);
  if (state.attr !== "crop") p.set("attr", state.attr);
  history.replaceState(null, "", `${location.pathname}?${p}`);
  try { localStorage.setItem(SAVED, `?${p}`); } catch (_) { /* private mode: not remembered */ }
}

// ------------------------------------------------------------------ map
function tileVersion(info = state.info) {
  return (info.tile_versions && info.tile_versions[state.year]) || info.version;
}

function tileUrl() {
  const v = tileVersion();
  return url(`/viewer/tiles/${state.year}/{z}/{x}/{y}.pbf`, { aoi: state.aoi, v }).replace("%7Bz%7D", "{z}")
    .replace("%7Bx%7D", "{x}").replace("%7By%7D", "{y}");
}

function style(info) {
  const sources = {};
  const layers = [{ id: "bg", type: "background", paint: { "background-color": "#eef0f2" } }];
  if (info.background) {
    sources.background = { type: "raster", tiles: [info.background.tiles], tileSize: 256,
      maxzoom: info.background.max_zoom, attribution: info.background.attribution || "" };
    layers.push({ id: "background", type: "raster", source: "background" });
  }
  return { version: 8, sources, layers };
}

function addParcelLayers() {
  const map = app.map;
  const info = state.info;
  map.addSource("parcels", { type: "vector", tiles: [tileUrl()], minzoom: info.min_zoom, maxzoom: 14,
    promoteId: "pid" });
  const { expr } = scale(state.attr, info, state.year);
  map.addLayer({ id: "parcels-fill", type: "fill", source: "parcels", "source-layer": "parcels",
    paint: { "fill-color": expr, "fill-opacity": info.background ? 0.6 : 0.82 } });
  map.addLayer({ id: "parcels-line", type: "line", source: "parcels", "source-layer": "parcels",
    paint: { "line-color": "#37474f", "line-width": ["interpolate", ["linear"], ["zoom"], 12, 0.2, 16, 1] } });
  map.addLayer({ id: "peers-line", type: "line", source: "parcels", "source-layer": "parcels",
    filter: ["in", ["get", "pid"], ["literal", []]],
    paint: { "line-color": "#ff8c00", "line-width": 2.5, "line-dasharray": [2, 1] } });
  map.addLayer({ id: "selected-line", type: "line", source: "parcels", "source-layer": "parcels",
    filter: ["==", ["get", "pid"], -1], paint: { "line-color": "#e6007e", "line-width": 3.5 } });
}

// the largest value of a count attribute among the parcels loaded (the colour ramp's top)
function seenMax(attr) {
  if (attr !== "s2_obs" && attr !== "s2_clear") return null;
  if (!app.map.getSource("parcels")) return null;
  let max = null;
  for (const f of app.map.querySourceFeatures("parcels", { sourceLayer: "parcels" })) {
    const v = f.properties[attr];
    if (typeof v === "number" && (max === null || v > max)) max = v;
  }
  return max;
}

function recolour() {
  state.scaleMax = seenMax(state.attr);
  const { expr, legend } = scale(state.attr, state.info, state.year, state.scaleMax);
  if (app.map.getLayer("parcels-fill")) app.map.setPaintProperty("parcels-fill", "fill-color", expr);
  $("legend").innerHTML = legend + summaryNote() + `<div class="keys"><div class="row"><span class="line" style="border-color:#e6007e">`
    + `</span>selected parcel</div><div class="row"><span class="line" style="border-color:#ff8c00;border-top-style:dashed">`
    + `</span>peers: same crop within 1 km</div></div>`;
}

// whether the colours come from a current summary of the year (cbm_ops.analyst.viewer.refresh_summary)
function summaryNote() {
  const info = state.info;
  if (state.attr === "crop" || state.attr === "quarantined") return "";
  const st = info.summaries && info.summaries[state.year];
  const busy = (info.refreshing || []).includes(state.year);
  const err = info.summary_errors && info.summary_errors[state.year];
  let text = "";
  if (!st) text = busy ? "computed live; the year's summary is being prepared" : "computed live";
  else if (st.version !== info.version) text = `as of ${st.refreshed_at.slice(0, 16).replace("T", " ")} UTC${busy ? ", refreshing" : ""}`;
  if (err) text += ` (summary: ${err})`;
  return text ? `<div class="small muted">${esc(text)}</div>` : "";
}

function highlight() {
  const map = app.map;
  if (!map.getLayer("selected-line")) return;
  map.setFilter("selected-line", ["==", ["get", "pid"], state.pid ?? -1]);
  map.setFilter("peers-line", ["in", ["get", "pid"], ["literal", state.peers]]);
}

function hint() {
  const h = $("hint");
  const z = app.map.getZoom();
  if (state.info && z < state.info.min_zoom) {
    h.textContent = `Zoom in to see the ${state.info.parcels.toLocaleString()} parcels (drawn from zoom ${state.info.min_zoom}; now ${z.toFixed(1)})`;
    h.hidden = false;
  } else {
    h.hidden = true;
  }
}

async function openAoi(name, { pid, year } = {}) {
  status("loading AOI ...");
  state.aoi = name;
  state.info = await getJSON("/viewer/api/aoi", { aoi: name });
  const info = state.info;
  const years = Object.keys(info.years).map(Number).sort();
  state.year = year && years.includes(year) ? year : info.year;
  $("year").innerHTML = (years.length ? years : [state.year]).map((y) => `<option value="${y}">${y}</option>`).join("");
  $("year").value = state.year;
  $("attr").innerHTML = Object.entries(info.attributes).map(([k, a]) => `<option value="${k}">${esc(a.label)}</option>`).join("");
  if (!info.attributes[state.attr]) state.attr = "crop";
  $("attr").value = state.attr;
  $("series").innerHTML = seriesOptions(info.bands).map((o) => `<option value="${o.value}">${esc(o.label)}</option>`).join("");
  $("series").value = state.series;
  const map = app.map;
  map.setStyle(style(info));
  await new Promise((resolve) => map.once("styledata", resolve));
  addParcelLayers();
  try {
    const outline = await getJSON("/viewer/api/outline", { aoi: name });
    if (outline) {
      map.addSource("aoi", { type: "geojson", data: outline });
      map.addLayer({ id: "aoi-line", type: "line", source: "aoi", paint: { "line-color": "#1f3a4d", "line-width": 1.5,
        "line-dasharray": [3, 2] } }, "parcels-fill");
    }
  } catch (e) { /* an AOI without its row: no outline */ }
  recolour();
  if (info.bounds && pid === undefined) map.fitBounds([[info.bounds[0], info.bounds[1]], [info.bounds[2], info.bounds[3]]],
    { padding: 30, animate: false, maxZoom: 17 });
  hint();
  status(`${info.parcels.toLocaleString()} parcels · results ${info.version}`);
  syncUrl();
  if (pid !== undefined && pid !== null) await selectParcel(pid, { fly: true });
  app.ready = true;
}

// ------------------------------------------------------------------ parcel panel
async function selectParcel(pid, { fly = false } = {}) {
  pid = Number(pid);
  state.pid = pid;
  state.peers = [];
  highlight();
  syncUrl();
  $("pid").value = pid;
  status(`loading parcel ${pid} ...`);
  const aoi = state.aoi;
  let p;
  try {
    p = rows(await getJSON("/query/parcelById", { aoi, pid, withGeometry: true, crs: "4326" }))[0];
  } catch (e) {
    $("parcel").innerHTML = `<p class="err">Parcel ${esc(pid)}: ${esc(e.message)}</p>`;
    for (const id of ["chartbar", "chartwrap", "chipsbar"]) $(id).hidden = true;
    status(e.message, true);
    return;
  }
  state.parcel = p;
  if (fly) {
    const g = JSON.parse(p.geom);
    const b = bbox(g);
    app.map.fitBounds([[b[0], b[1]], [b[2], b[3]]], { padding: 140, maxZoom: 16, animate: false });
  }
  renderParcel();
  // min_area 0: every parcel of the same crop nearby (the JRC shape's default leaves out those under 3,000 m2)
  const peers = getJSON("/query/parcelPeers", { aoi, pid, distance: 1000, max: 50, min_area: 0 })
    .then((r) => { state.peers = r.pids; })
    .catch((e) => { state.peers = []; state.peerError = e.message; });
  const year = state.year;
  // unscreened: also the S2 dates without an SCL histogram (the JRC shape's default drops them)
  const ts = (tstype) => getJSON("/query/parcelTimeSeries", { aoi, pid, tstype, year, lineage: true, ref: true,
    unscreened: tstype === "s2" ? true : undefined })
    .then((c) => observations(rows(c), tstype))
    .catch((e) => { if (e instanceof ApiError && e.status === 400) return []; throw e; });
  const cards = Object.keys(state.info.bands);
  try {
    const [s2, bs, c6] = await Promise.all([
      cards.includes("s2") ? ts("s2") : [], cards.includes("bs") ? ts("bs") : [], cards.includes("c6") ? ts("c6") : []]);
    await peers;
    if (state.pid !== pid) return;                 // another parcel was chosen meanwhile
    state.obs = { s2, bs, c6 };
    renderParcel();
    drawChart();
    highlight();
    status(`parcel ${pid}: ${s2.length} S2 and ${bs.length} S1 observations in ${year}`);
  } catch (e) {
    status(e.message, true);
  }
}

function bbox(g) {
  let b = [Infinity, Infinity, -Infinity, -Infinity];
  const walk = (c) => {
    if (typeof c[0] === "number") {
      b = [Math.min(b[0], c[0]), Math.min(b[1], c[1]), Math.max(b[2], c[0]), Math.max(b[3], c[1])];
    } else c.forEach(walk);
  };
  walk(g.coordinates);
  return b;
}

function renderParcel() {
  const p = state.parcel;
  const o = state.obs;
  const s2 = o.s2 || [];
  const clear = s2.filter((x) => x.cloudfree === true).length;
  const crop = p.crop !== undefined && p.crop !== null ? esc(p.crop) : "<span class='muted'>no crop column</span>";
  const peers = state.peers.length
    ? `peers (same crop within 1 km, dashed orange): ${state.peers.slice(0, 12).map((q) => `<button type="button" data-pid="${q}">${q}</button>`).join("")}${state.peers.length > 12 ? ` and ${state.peers.length - 12} more` : ""}`
    : (state.peerError ? `peers: ${esc(state.peerError)}` : "no peers of the same crop within 1 km");
  $("parcel").innerHTML = `<h2>Parcel ${esc(p.ogc_fid)} · ${crop}</h2>`
    + `<div class="facts"><span><b>${(p.area / 1e4).toFixed(2)}</b> ha</span>`
    + `<span>centroid ${p.clat.toFixed(5)} N, ${p.clon.toFixed(5)} E</span>`
    + (s2.length || (o.bs || []).length ? `<span><b>${s2.length}</b> S2 dates, <b>${clear}</b> cloud-free</span>`
      + `<span><b>${(o.bs || []).length}</b> S1 backscatter</span>` : "")
    + `</div><div class="peers small">${peers}</div>`;
  for (const b of $("parcel").querySelectorAll("button[data-pid]")) b.onclick = () => selectParcel(b.dataset.pid);
}

function drawChart() {
  for (const id of ["chartbar", "chartwrap", "chipsbar"]) $(id).hidden = false;
  if (!app.chart) {
    app.chart = makeChart($("chart"), {
      onHover: (o) => { $("lineage").innerHTML = describe(o); },
      onClick: (o) => addChipCard($("chips"), { aoi: state.aoi, parcel: state.parcel, obs: o }),
    });
  }
  show(app.chart, state.series, state.obs, state.year);
  const n = app.chart.data.datasets.reduce((a, d) => a + (d.label === "p25" ? 0 : d.data.length), 0);
  $("chartnote").textContent = n ? "" : `no observations in ${state.year}`;
  $("lineage").textContent = "Hover a date for its product and lineage; click it for its image chips.";
}

// ------------------------------------------------------------------ start
async function main() {
  const map = new maplibregl.Map({ container: "map", style: { version: 8, sources: {}, layers: [] },
    center: [10, 50], zoom: 3, attributionControl: { compact: true }, dragRotate: false, pitchWithRotate: false });
  app.map = map;
  map.addControl(new maplibregl.NavigationControl({ showCompass: false }), "top-right");
  map.addControl(new maplibregl.ScaleControl({ unit: "metric" }), "bottom-right");
  await new Promise((resolve) => map.on("load", resolve));
  map.on("zoomend", hint);
  // new tiles may hold larger counts: rescale once the map is idle
  map.on("idle", () => { if (state.info && seenMax(state.attr) !== state.scaleMax) recolour(); });
  map.on("data", (e) => { if (e.sourceId === "parcels" && e.tile) app.tilesLoaded++; });
  map.on("error", (e) => status(`map: ${e.error?.message || e.error || "error"}`, true));
  map.on("click", "parcels-fill", (e) => { if (e.features.length) selectParcel(e.features[0].properties.pid); });
  map.on("mousemove", "parcels-fill", (e) => {
    const f = e.features[0];
    if (!f) return;
    map.getCanvas().style.cursor = "pointer";
    const a = state.attr;
    const val = f.properties[a];
    const label = state.info.attributes[a].label;
    const h = $("hover");
    h.hidden = false;
    h.style.left = `${e.point.x + 14}px`;
    h.style.top = `${e.point.y + 10}px`;
    h.innerHTML = `parcel <b>${esc(f.properties.pid)}</b>${f.properties.crop ? " · " + esc(f.properties.crop) : ""}<br>`
      + `${esc(label)}: <b>${val === undefined || val === null ? "-" : esc(val)}</b>`;
  });
  map.on("mouseleave", "parcels-fill", () => { map.getCanvas().style.cursor = ""; $("hover").hidden = true; });

  $("attr").onchange = () => { state.attr = $("attr").value; recolour(); syncUrl(); };
  $("year").onchange = async () => {
    state.year = Number($("year").value);
    app.map.getSource("parcels").setTiles([tileUrl()]);
    recolour();
    syncUrl();
    if (state.pid !== null) await selectParcel(state.pid);
  };
  $("aoi").onchange = () => { state.pid = null; openAoi($("aoi").value).catch((e) => status(e.message, true)); };
  $("series").onchange = () => { state.series = $("series").value; if (app.chart) show(app.chart, state.series, state.obs, state.year); };
  $("search").onsubmit = (e) => { e.preventDefault(); if ($("pid").value !== "") selectParcel($("pid").value, { fly: true }); };
  $("chipsclear").onclick = () => { $("chips").innerHTML = ""; };
  // a new results version (scenes extracted, requeued, parcels re-imported) or a refreshed summary:
// new tile URLs
  setInterval(async () => {
    if (!state.aoi) return;
    try {
      const info = await getJSON("/viewer/api/aoi", { aoi: state.aoi });
      const changed = tileVersion(info) !== tileVersion();
      const note = JSON.stringify([info.refreshing, info.summary_errors]) !== JSON.stringify([state.info.refreshing,
        state.info.summary_errors]);
      state.info = info;
      if (changed) {
        app.map.getSource("parcels").setTiles([tileUrl()]);
        status(`results changed: ${tileVersion()}`);
      }
      if (changed || note) recolour();
    } catch (_) { /* keep the current tiles */ }
  }, 15000);

  const aois = await getJSON("/viewer/api/aois");
  if (!aois.length) { status("no AOI configured", true); return; }
  $("aoi").innerHTML = aois.map((a) => `<option value="${esc(a.name)}" title="${esc(a.description)}">${esc(a.name)}</option>`).join("");
  const want = params.get("aoi");
  const name = aois.some((a) => a.name === want) ? want : aois[0].name;
  if (want && name !== want) status(`no AOI ${want}; showing ${name}`, true);
  $("aoi").value = name;
  const pid = params.get("pid");
  await openAoi(name, { pid: pid !== null && pid !== "" ? Number(pid) : undefined,
    year: params.get("year") ? Number(params.get("year")) : undefined });
}

main().catch((e) => { status(e.message || String(e), true); console.error(e); });
