// Requests to the parcel API this page is served by: {root}/viewer/ is the page, {root}/query/...
// the API's routes ({root} is "/cbm" in the Airflow api-server, "" standalone). Same-origin
// requests carry the login (Airflow's session cookie, or the browser's HTTP basic login).

export const ROOT = location.pathname.replace(/\/viewer(\/.*)?$/, "");

export function url(path, params = {}) {
  const u = new URL(ROOT + path, location.origin);
  for (const [k, v] of Object.entries(params)) {
    if (v === undefined || v === null) continue;
    for (const item of Array.isArray(v) ? v : [v]) u.searchParams.append(k, item);
  }
  return u.href;
}

export class ApiError extends Error {
  constructor(status, detail) {
    super(detail);
    this.status = status;
  }
}

export async function getJSON(path, params) {
  const r = await fetch(url(path, params), { credentials: "same-origin" });
  if (!r.ok) {
    let detail = `${r.status} ${r.statusText}`;
    try {
      const body = await r.json();
      if (body && body.detail) detail = body.detail;
    } catch (_) { /* not JSON */ }
    throw new ApiError(r.status, detail);
  }
  return r.json();
}

// Column lists (the JRC API shape) -> array of row objects
export function rows(columns) {
  const names = Object.keys(columns || {});
  const n = names.length ? columns[names[0]].length : 0;
  const out = new Array(n);
  for (let i = 0; i < n; i++) {
    const r = {};
    for (const k of names) r[k] = columns[k][i];
    out[i] = r;
  }
  return out;
}
