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
    for (const c of chips) {
      const fig = document.createElement("figure");
      const img = new Image(128, 128);
      img.alt = `${c.caption} ${when}`;
      img.src = c.src;
      img.onerror = () => { fig.innerHTML = `<div class="err">${esc(c.caption)}: not available</div>`; };
      const cap = document.createElement("figcaption");
      cap.textContent = c.caption;
      fig.append(img, cap);
      imgs.appendChild(fig);
    }
  } catch (e) {
    imgs.innerHTML = `<span class="err">${esc(e.message)}</span>`;
  }
  return card;
}

// The chips of an observation: PNG URLs of the API's chip route, one per composite
export async function chipsOf(aoi, parcel, obs) {
  const day = obs.obstime.slice(0, 10);
  const next = new Date(Date.UTC(+day.slice(0, 4), +day.slice(5, 7) - 1, +day.slice(8, 10) + 1)).toISOString().slice(0, 10);
  const composites = obs.card === "s2"
    ? [{ caption: "B08 B04 B03", band: "B08_B04_B03" }, { caption: "B04 B03 B02", band: "B04_B03_B02" }]
    : [{ caption: "VV", band: "VV" }];
  const out = [];
  for (const c of composites) {
    const params = { aoi, lon: parcel.clon, lat: parcel.clat, start_date: day, end_date: next, band: c.band,
      chipsize: 1280, format: "json" };
    const list = await getJSON("/query/chipsByLocation", params);
    for (const chip of list.chips || []) {
      if (chip.obsid === undefined || chip.obsid === obs.obsid || list.chips.length === 1) {
        out.push({ caption: c.caption, src: chip.href ? url(chip.href) : `data:image/png;base64,${chip.png}` });
        break;
      }
    }
  }
  return out;
}
