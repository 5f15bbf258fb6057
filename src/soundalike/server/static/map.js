// The map of the library: every track a point of a 2-D projection, coloured by its top tag or its family;
// zoom, pan, hover, click.

import { api } from "./api.js";
import { countQuery, familyCount } from "./families.js";
import { playNow } from "./player.js";
import { $, el, plural, showError } from "./ui.js";

// Tableau's qualitative palette without its grey: the 9 most common tags; every other tag is grey
const PALETTE = ["#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7", "#9c755f"];
// Tableau 20 without its greys: families are more than tags worth a colour
const FAMILY_PALETTE = [...PALETTE, "#a0cbe8", "#ffbe7d", "#ff9d9a", "#86bcb6", "#8cd17d", "#f1ce63", "#d4a6c8",
                        "#fabfd2", "#d7b5a6"];
const OTHER = "#9a9a9a";
const METHODS = { umap: "UMAP projection", pca: "PCA projection", tsne: "t-SNE projection" };
const MIN_ZOOM = 0.5, MAX_ZOOM = 400, WHEEL_STEP = 1.0015, BUTTON_STEP = 1.6;
const CELL = 16; // px of the hover grid
const CLICK_SLOP = 5; // px a press may move and still be a click

let map = null; // {data, colouring (see colouring()), view: {k, tx, ty}, fit, screen, grid, highlight}
let loading = null;
let colourBy = "tag"; // or "family"
let wantedFamily = null; // a family to highlight once the map is coloured by family

export async function showMap() {
  if (map) return coloured();
  if (loading) return loading;
  $("map-loading").hidden = false;
  loading = api("/api/map").then((data) => {
    map = prepare(data);
    legend();
    resetView();
  }).catch((error) => {
    showError($("map-legend"), error);
  }).finally(() => {
    $("map-loading").hidden = true;
    loading = null;
  });
  await loading;
  if (map) await coloured();
}

/** Draw the map coloured as the switch says (and the wanted family highlighted). */
async function coloured() {
  try {
    await recolour();
  } catch (error) {
    showError($("map-legend"), error);
  }
  if (wantedFamily !== null && map.colouring.by === "family") {
    const slot = map.colouring.ranked.findIndex(([label]) => label === wantedFamily);
    if (slot >= 0) highlight(slot);
  }
  wantedFamily = null;
  draw();
}

/** The library changed: read the map again when next shown. */
export function forgetMap() {
  map = null;
}

function prepare(data) {
  return { data, colouring: colouring("tag", data.tag, data.tags, PALETTE, "other tags"), highlight: null, view: null,
           fit: null, grid: null };
}

/** Colours of the points labelled `labels` (an index into `names` per point, -1 none): the most common labels
 * get the palette's colours, in order, and the others grey (`otherName` in the legend). */
function colouring(by, labels, names, palette, otherName) {
  const counts = new Map();
  for (const t of labels) if (t >= 0) counts.set(t, (counts.get(t) || 0) + 1);
  const ranked = [...counts.entries()].sort((a, b) => b[1] - a[1]).slice(0, palette.length);
  const slotOf = new Map(ranked.map(([label], slot) => [label, slot]));
  const colour = Int8Array.from(labels, (t) => (slotOf.has(t) ? slotOf.get(t) : -1));
  const others = labels.length - ranked.reduce((n, [, c]) => n + c, 0);
  return { by, count: familyCount(), labels, names, palette, otherName, colour, ranked, others };
}

/** Colour the map by `colourBy` (the families asked of the server with the page's count), unless it is already. */
async function recolour() {
  const current = map.colouring;
  if (current && current.by === colourBy && (colourBy === "tag" || current.count === familyCount())) return;
  if (colourBy === "tag") {
    map.colouring = prepare(map.data).colouring;
  } else {
    const members = await api(`/api/families/members${countQuery()}`);
    const familyOf = new Map(members.ids.map((id, k) => [id, members.family[k]]));
    map.colouring = colouring("family", map.data.ids.map((id) => familyOf.get(id) ?? -1), members.names,
                              FAMILY_PALETTE, "other families");
  }
  map.highlight = null;
  legend();
}

/** Show the map coloured by family, only `family` (an index into the families) highlighted. */
export function showFamilyOnMap(family) {
  wantedFamily = family;
  setColourBy("family");
}

function setColourBy(by) {
  colourBy = by;
  for (const input of document.querySelectorAll("input[name=map-colour]")) input.checked = input.value === by;
  if (location.hash !== "#/map") location.hash = "#/map"; // the route shows the map
  else showMap();
}

// --- drawing --------------------------------------------------------------------------------------
const canvas = () => $("map-canvas");

function size() {
  const c = canvas(), ratio = devicePixelRatio || 1;
  const width = c.clientWidth, height = c.clientHeight;
  if (c.width !== Math.round(width * ratio) || c.height !== Math.round(height * ratio)) {
    c.width = Math.round(width * ratio);
    c.height = Math.round(height * ratio);
  }
  return { width, height, ratio };
}

function resetView() {
  if (!map) return;
  const { width, height } = size(), { x, y } = map.data, margin = 24;
  const bounds = (a) => a.reduce(([lo, hi], v) => [Math.min(lo, v), Math.max(hi, v)], [Infinity, -Infinity]);
  const [x0, x1] = bounds(x), [y0, y1] = bounds(y);
  const k = Math.min((width - 2 * margin) / ((x1 - x0) || 1), (height - 2 * margin) / ((y1 - y0) || 1));
  map.fit = k;
  map.view = { k, tx: width / 2 - k * (x0 + x1) / 2, ty: height / 2 + k * (y0 + y1) / 2 };
  draw();
}

const zoomLevel = () => map.view.k / map.fit;

function radius() {
  const n = map.data.ids.length, base = n > 20000 ? 2 : n > 3000 ? 3 : 4.5;
  return Math.min(base * Math.sqrt(zoomLevel()), 14);
}

function draw() {
  if (!map) return;
  const c = canvas(), ctx = c.getContext("2d"), { width, height, ratio } = size();
  const { x, y, ids } = map.data, { k, tx, ty } = map.view, r = Math.max(radius(), 2);
  ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
  ctx.clearRect(0, 0, width, height);
  const sx = new Float32Array(ids.length), sy = new Float32Array(ids.length);
  for (let i = 0; i < ids.length; i++) { sx[i] = x[i] * k + tx; sy[i] = -y[i] * k + ty; }
  map.screen = { sx, sy, r };
  map.grid = null;
  const { palette, colour } = map.colouring;
  for (let slot = -1; slot < palette.length; slot++) {
    const dim = map.highlight !== null && map.highlight !== slot;
    ctx.globalAlpha = dim ? 0.12 : slot < 0 ? 0.55 : 0.9;
    ctx.fillStyle = slot < 0 ? OTHER : palette[slot];
    ctx.beginPath();
    for (let i = 0; i < ids.length; i++) {
      if (colour[i] !== slot || sx[i] < -r || sy[i] < -r || sx[i] > width + r || sy[i] > height + r) continue;
      ctx.moveTo(sx[i] + r, sy[i]);
      ctx.arc(sx[i], sy[i], r, 0, 2 * Math.PI);
    }
    ctx.fill();
  }
  ctx.globalAlpha = 1;
  c.dataset.zoom = zoomLevel().toFixed(2);
  const method = METHODS[map.data.method] || "2-D projection";
  $("map-method").textContent = `${method} of ${plural(ids.length, "track")} · zoom ${zoomLevel().toFixed(1)}×`;
}

function legend() {
  const { names, palette, ranked, others, otherName } = map.colouring;
  $("map-legend").dataset.by = map.colouring.by;
  const item = (slot, name, count) => el("li", {},
    el("button", { type: "button", class: "legend-item", "aria-pressed": "false", dataset: { slot },
                   title: "Show only these", onclick: () => highlight(slot) },
       el("span", { class: "swatch", style: `background: ${slot < 0 ? OTHER : palette[slot]}` }),
       name, el("span", { class: "muted small" }, String(count))));
  $("map-legend").replaceChildren(
    ...ranked.map(([label, count], slot) => item(slot, names[label], count)),
    ...(others ? [item(-1, otherName, others)] : []));
}

function highlight(slot) {
  map.highlight = map.highlight === slot ? null : slot;
  for (const b of document.querySelectorAll("#map-legend .legend-item")) {
    b.setAttribute("aria-pressed", String(map.highlight !== null && Number(b.dataset.slot) === map.highlight));
  }
  draw();
}

// --- zoom and pan ---------------------------------------------------------------------------------
function zoomAt(px, py, factor) {
  const v = map.view, level = Math.min(Math.max(zoomLevel() * factor, MIN_ZOOM), MAX_ZOOM);
  const f = (level * map.fit) / v.k;
  map.view = { k: v.k * f, tx: px - (px - v.tx) * f, ty: py - (py - v.ty) * f };
  draw();
}

function panBy(dx, dy) {
  map.view.tx += dx;
  map.view.ty += dy;
  draw();
}

function local(event) {
  const rect = canvas().getBoundingClientRect();
  return [event.clientX - rect.left, event.clientY - rect.top];
}

/** The point under (px, py) in CSS pixels, or -1. */
function pointAt(px, py) {
  const { sx, sy, r } = map.screen;
  if (!map.grid) {
    map.grid = new Map();
    for (let i = 0; i < sx.length; i++) {
      const key = `${Math.floor(sx[i] / CELL)},${Math.floor(sy[i] / CELL)}`;
      if (!map.grid.has(key)) map.grid.set(key, []);
      map.grid.get(key).push(i);
    }
  }
  let best = -1, bestD = (r + 4) ** 2;
  const gx = Math.floor(px / CELL), gy = Math.floor(py / CELL);
  for (let ix = gx - 1; ix <= gx + 1; ix++) {
    for (let iy = gy - 1; iy <= gy + 1; iy++) {
      for (const i of map.grid.get(`${ix},${iy}`) || []) {
        const d = (sx[i] - px) ** 2 + (sy[i] - py) ** 2;
        if (d < bestD) { best = i; bestD = d; }
      }
    }
  }
  return best;
}

function tip(px, py) {
  const i = map ? pointAt(px, py) : -1, box = $("map-tip");
  box.hidden = i < 0;
  canvas().style.cursor = i < 0 ? "grab" : "pointer";
  if (i < 0) return;
  const { names, labels } = map.colouring;
  box.replaceChildren(el("strong", {}, map.data.labels[i]), el("span", { class: "small" }, names[labels[i]] ?? ""));
  const wrap = $("map-wrap").getBoundingClientRect();
  box.style.left = `${Math.min(px + 14, wrap.width - box.offsetWidth - 4)}px`;
  box.style.top = `${Math.min(py + 14, wrap.height - box.offsetHeight - 4)}px`;
}

async function play(px, py) {
  const i = pointAt(px, py);
  if (i < 0) return;
  try { playNow(await api(`/api/tracks/${map.data.ids[i]}`)); } catch (error) { showError($("map-method"), error); }
}

function initPointers(c) {
  const pointers = new Map(); // pointerId -> [x, y]
  let pressed = null, moved = 0;
  const spread = () => { const [a, b] = [...pointers.values()]; return Math.hypot(a[0] - b[0], a[1] - b[1]); };
  c.addEventListener("pointerdown", (e) => {
    c.setPointerCapture(e.pointerId);
    pointers.set(e.pointerId, local(e));
    pressed = local(e);
    moved = 0;
  });
  c.addEventListener("pointermove", (e) => {
    const [px, py] = local(e);
    if (!map) return;
    if (!pointers.has(e.pointerId)) return tip(px, py);
    const [ox, oy] = pointers.get(e.pointerId);
    if (pointers.size === 2) {
      const before = spread();
      pointers.set(e.pointerId, [px, py]);
      const [a, b] = [...pointers.values()];
      zoomAt((a[0] + b[0]) / 2, (a[1] + b[1]) / 2, spread() / (before || 1));
    } else {
      pointers.set(e.pointerId, [px, py]);
      moved += Math.abs(px - ox) + Math.abs(py - oy);
      if (moved > CLICK_SLOP) { panBy(px - ox, py - oy); $("map-tip").hidden = true; }
    }
  });
  const release = (e) => {
    const wasClick = pointers.size === 1 && moved <= CLICK_SLOP && pressed;
    pointers.delete(e.pointerId);
    if (wasClick && e.type === "pointerup" && map) play(...local(e));
    if (!pointers.size) pressed = null;
  };
  c.addEventListener("pointerup", release);
  c.addEventListener("pointercancel", release);
  c.addEventListener("pointerleave", () => { if (!pointers.size) $("map-tip").hidden = true; });
  c.addEventListener("wheel", (e) => {
    if (!map) return;
    e.preventDefault();
    zoomAt(...local(e), WHEEL_STEP ** -e.deltaY);
  }, { passive: false });
}

export function initMap() {
  const c = canvas();
  initPointers(c);
  const centre = () => [c.clientWidth / 2, c.clientHeight / 2];
  $("map-zoom-in").onclick = () => map && zoomAt(...centre(), BUTTON_STEP);
  $("map-zoom-out").onclick = () => map && zoomAt(...centre(), 1 / BUTTON_STEP);
  $("map-reset").onclick = resetView;
  for (const input of document.querySelectorAll("input[name=map-colour]")) {
    input.onchange = () => setColourBy(input.value);
  }
  new ResizeObserver(() => { if (map && c.clientWidth) draw(); }).observe(c);
}
