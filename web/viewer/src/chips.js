// Image chips of one acquisition next to the chart, several dates side by side. The chips come
// from the JRC chip routes of the parcel API (contract: docs/analyst-api.md, "Image chips").
import { url, getJSON } from "./api.js";
import { esc } from "./colours.js";

// One date's chips: a card with a header (date, close) and one image per composite
export async function addChipCard(container, { aoi, parcel, obs }) {
  const id = `chip-${obs.obsid}`;
  if (container.querySelector(`#${id}`)) return container.querySelector(`#${id}`);
  const card = document.createElement("div");
  card.className = "chip";
  card.id = id;
  card.dataset.obsid = obs.obsid;
  const when = obs.obstime.slice(0, 10);
  card.innerHTML = `<div class="head"><span><b>${esc(when)}</b> ${esc(obs.card === "s2" ? (obs.cloudfree === false
    ? "cloudy" : obs.cloudfree ? "cloud-free" : "") : "S1")}</span><button type="button" title="remove">×</button></div>`
    + `<div class="imgs"><span class="muted small">loading chips ...</span></div>`;
  card.querySelector("button").onclick = () => card.remove();
  container.appendChild(card);
  const imgs = card.querySelector(".imgs");
  try {
    const chips = await chipsOf(aoi, parcel, obs);
    imgs.innerHTML = "";
    if (!chips.length) {
      imgs.innerHTML = `<span class="err">no chip for this date</span>`;
      return card;
    }
    const outline = outlineSvg(parcel, chips.size);
    for (const c of chips) {
      const fig = document.createElement("figure");
      const box = document.createElement("div");
      box.className = "chipbox";
      const img = new Image(128, 128);
      img.alt = `${c.caption} ${when}`;
      img.src = c.src;
      img.onerror = () => { fig.innerHTML = `<div class="err">${esc(c.caption)}: not available</div>`; };
      box.appendChild(img);
      if (outline) box.insertAdjacentHTML("beforeend", outline);
      const cap = document.createElement("figcaption");
      cap.textContent = c.caption;
      fig.append(box, cap);
      imgs.appendChild(fig);
    }
  } catch (e) {
    const why = e.status === 404 && /not found/i.test(e.message)
      ? "no chips: this API has no chip route (chipsByLocation)" : e.message;
    imgs.innerHTML = `<span class="err">${esc(why)}</span>`;
  }
  return card;
}

// The chips of an observation: the PNG composites of its datatake from the JRC route
// chipsByLocation (format=json: {"dates": ["YYYYMMDDTHHMMSS", ...], "chips": [<path under the API
// root>, ...]}, a square around the parcel centroid of 1.6 x the parcel's extent (320-1280 m), lut
// 5_95 stretch), with the parcel's outline drawn over them. Sentinel-1 dates have no PNG chips (the
// S1 chip routes give GeoTIFFs).
export const COMPOSITES = [{ caption: "B08 B04 B03 (NIR)", bands: "B08_B04_B03" },
  { caption: "B04 B03 B02 (true colour)", bands: "B04_B03_B02" }];

// metres east/north of the centroid (local tangent plane: the chip is a few hundred metres wide)
function local(parcel, lon, lat) {
  const k = Math.cos((parcel.clat * Math.PI) / 180);
  return [(lon - parcel.clon) * 111320 * k, (lat - parcel.clat) * 110574];
}

// chip edge (m): the parcel and its surroundings, 320-1280 m (the JRC's fixed 1280 m at most)
export function chipSize(parcel) {
  let w = 0;
  try {
    const walk = (c) => {
      if (typeof c[0] !== "number") { c.forEach(walk); return; }
      const [x, y] = local(parcel, c[0], c[1]);
      w = Math.max(w, Math.abs(x), Math.abs(y));
    };
    walk(JSON.parse(parcel.geom).coordinates);
  } catch (_) { return 1280; }
  return Math.min(1280, Math.max(320, Math.ceil((2 * w * 1.6) / 80) * 80));
}

// the parcel's outline over a chip of `size` metres centred on its centroid (SVG, 128 px)
function outlineSvg(parcel, size) {
  let geom;
  try { geom = JSON.parse(parcel.geom); } catch (_) { return ""; }
  const polys = geom.type === "MultiPolygon" ? geom.coordinates : [geom.coordinates];
  const px = (lon, lat) => {
    const [x, y] = local(parcel, lon, lat);
    return `${((x / size + 0.5) * 128).toFixed(1)},${((0.5 - y / size) * 128).toFixed(1)}`;
  };
  const d = polys.flatMap((rings) => rings.map((r) => "M" + r.map(([lon, lat]) => px(lon, lat)).join("L") + "Z")).join("");
  return `<svg class="outline" viewBox="0 0 128 128" width="128" height="128" aria-hidden="true"><path d="${d}"/></svg>`;
}

export async function chipsOf(aoi, parcel, obs) {
  if (obs.card !== "s2") throw new Error("Sentinel-1 dates have no image chips here (PNG chips are Sentinel-2)");
  const day = obs.obstime.slice(0, 10);
  const key = (obs.datatake || "").split(":").pop();
  const size = chipSize(parcel);
  const out = [];
  out.size = size;
  for (const c of COMPOSITES) {
    const params = { aoi, lon: parcel.clon, lat: parcel.clat, start_date: day, end_date: day, bands: c.bands,
      band: c.bands, lut: "5_95", chipsize: size, format: "json" };
    const list = await getJSON("/query/chipsByLocation", params);
    const dates = list.dates || [];
    let i = dates.indexOf(key);
    if (i < 0 && dates.length === 1) i = 0;
    if (i >= 0 && list.chips && list.chips[i]) out.push({ caption: c.caption, src: url(list.chips[i]) });
  }
  return out;
}
