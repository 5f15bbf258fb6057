"use strict";
// soundalike's page: plain JavaScript over the HTTP API (see /docs), no build step.

const TOKEN = new URLSearchParams(location.search).get("token");
const $ = (id) => document.getElementById(id);
const player = $("player");
const state = { track: null, radio: null, pathSongs: [], pathTracks: [], queue: [] };

async function api(path, options = {}) {
  const headers = Object.assign({}, options.headers || {});
  if (TOKEN) headers.Authorization = "Bearer " + TOKEN;
  const response = await fetch(path, Object.assign({}, options, { headers }));
  if (!response.ok) {
    let detail = response.statusText;
    try { detail = (await response.json()).detail; } catch (e) { /* not JSON */ }
    throw new Error(typeof detail === "string" ? detail : JSON.stringify(detail));
  }
  return response.status === 204 ? null : response.headers.get("content-type").includes("json")
    ? response.json() : response.text();
}
const post = (path, body) => api(path, { method: "POST", headers: { "Content-Type": "application/json" },
                                         body: JSON.stringify(body) });
const withToken = (url) => TOKEN ? url + (url.includes("?") ? "&" : "?") + "token=" + encodeURIComponent(TOKEN) : url;
const label = (t) => (t.artist && t.title) ? `${t.artist} – ${t.title}` : (t.title || t.path.split("/").pop());
const fmt = (s) => `${Math.floor(s / 60)}:${String(Math.floor(s % 60)).padStart(2, "0")}`;

function showError(where, error) {
  where.innerHTML = "";
  const p = document.createElement("p");
  p.className = "error";
  p.textContent = error.message;
  where.append(p);
}

// --- playing ------------------------------------------------------------------------
function play(track, start = 0, then = null) {
  player.src = withToken(`/api/tracks/${track.id}/audio`);
  player.dataset.trackId = track.id;
  state.onEnded = then;
  $("now-playing").textContent = "▶ " + label(track);
  player.addEventListener("loadedmetadata", () => { if (start) player.currentTime = start; }, { once: true });
  player.play().catch(() => { /* autoplay refused: the user presses play */ });
}
player.addEventListener("ended", () => { if (state.onEnded) state.onEnded(); });

function trackItem(track, extra) {
  const li = document.createElement("li");
  li.className = "track";
  li.dataset.id = track.id;
  const a = document.createElement("a");
  a.href = `#/track/${track.id}`;
  a.textContent = label(track);
  li.append(a);
  const button = document.createElement("button");
  button.textContent = "▶";
  button.title = "play";
  button.className = "play";
  button.onclick = () => play(track);
  li.append(button);
  if (track.score !== undefined) {
    const s = document.createElement("span");
    s.className = "score";
    s.textContent = track.score.toFixed(3);
    li.append(s);
  }
  if (track.tags && track.tags.length) {
    const s = document.createElement("span");
    s.className = "why";
    s.textContent = " " + track.tags.map((t) => t.tag).join(", ");
    li.append(s);
  }
  if (extra) extra(li);
  return li;
}

function fillTracks(list, tracks, extra) {
  list.innerHTML = "";
  for (const t of tracks) list.append(trackItem(t, extra));
  if (!tracks.length) list.innerHTML = "<li>Nothing found.</li>";
}

function fillTags(list, tags) {
  list.innerHTML = "";
  for (const t of tags) {
    const li = document.createElement("li");
    li.textContent = `${t.tag} ${Math.round(100 * t.probability)}%`;
    list.append(li);
  }
}

// --- search -------------------------------------------------------------------------
async function search() {
  const q = $("search-input").value.trim(), tag = $("search-tag").value;
  const params = new URLSearchParams({ q, limit: 100 });
  if (tag) params.set("tag", tag);
  try { fillTracks($("search-results"), await api("/api/tracks?" + params)); }
  catch (e) { showError($("search-results"), e); }
}
$("search-form").onsubmit = (e) => { e.preventDefault(); search(); };

// --- a track ------------------------------------------------------------------------
function explanation(seed, rec) {
  return (li) => {
    const why = document.createElement("div");
    why.className = "why";
    if (rec.shared_tags.length) why.append("shares: " + rec.shared_tags.join(", ") + ". ");
    for (const p of rec.passages) {
      const b = document.createElement("button");
      b.className = "passage";
      b.textContent = `${fmt(p.seed_start)} ↔ ${fmt(p.track_start)}`;
      b.title = `this track at ${fmt(p.seed_start)} sounds like that one at ${fmt(p.track_start)} (cosine ${p.score})`;
      b.onclick = () => play(rec, p.track_start);
      why.append(b);
    }
    li.append(why);
  };
}

async function showTrack(id) {
  const track = await api(`/api/tracks/${id}`);
  state.track = track;
  $("track-title").textContent = label(track);
  $("track-meta").textContent = [track.album, track.genre, track.duration ? fmt(track.duration) : null, track.path]
    .filter(Boolean).join(" · ");
  fillTags($("track-tags"), track.tags);
  $("spectrogram").src = withToken(`/api/tracks/${id}/spectrogram.png`);
  await showSimilar();
}

async function showSimilar() {
  const track = state.track, tag = $("similar-tag").value;
  const params = new URLSearchParams({ k: 10 });
  if (tag) params.set("tag", tag);
  try {
    const recs = await api(`/api/tracks/${track.id}/similar?` + params);
    const list = $("similar-list");
    list.innerHTML = "";
    for (const rec of recs) list.append(trackItem(rec, explanation(track, rec)));
    if (!recs.length) list.innerHTML = "<li>Nothing similar with this filter.</li>";
  } catch (e) { showError($("similar-list"), e); }
}
$("similar-tag").onchange = showSimilar;
$("track-play").onclick = () => play(state.track);
$("track-add-path").onclick = () => { state.pathSongs.push(state.track); renderPathSongs(); location.hash = "#/path"; };
$("track-radio").onclick = () => startRadio(state.track);

// --- radio --------------------------------------------------------------------------
for (const id of ["keep-on", "drunk"]) $(id).oninput = () => { $(id + "-value").textContent = $(id).value; };

function startRadio(seed) {
  state.radio = { seeds: [seed.id], history: [] };
  $("radio-history").innerHTML = "";
  $("radio-status").textContent = "Radio from " + label(seed);
  location.hash = "#/radio";
  play(seed, 0, radioNext);
}

async function radioNext() {
  const radio = state.radio;
  if (!radio) return;
  try {
    const next = await post("/api/radio/next", { seeds: radio.seeds, history: radio.history,
      keep_on: +$("keep-on").value, drunk: +$("drunk").value });
    if (!next) { $("radio-status").textContent = "The radio has played everything."; return; }
    radio.history.push(next.id);
    $("radio-history").append(trackItem(next));
    play(next, 0, radioNext);
  } catch (e) { $("radio-status").textContent = e.message; }
}
$("radio-skip").onclick = radioNext;

// --- path ---------------------------------------------------------------------------
function renderPathSongs() {
  fillTracks($("path-songs"), state.pathSongs);
}

async function buildPath() {
  try {
    state.pathTracks = await post("/api/path", { songs: state.pathSongs.map((t) => t.id),
      length: +$("path-length").value, drunk: +$("path-drunk").value });
    fillTracks($("path-list"), state.pathTracks);
    $("path-play").disabled = $("path-export").disabled = false;
  } catch (e) { showError($("path-list"), e); }
}

function playQueue(tracks, index = 0) {
  if (index < tracks.length) play(tracks[index], 0, () => playQueue(tracks, index + 1));
}

async function exportPath() {
  const text = await post("/api/playlist.m3u8", { ids: state.pathTracks.map((t) => t.id) });
  const a = document.createElement("a");
  a.href = URL.createObjectURL(new Blob([text], { type: "audio/x-mpegurl" }));
  a.download = "soundalike-path.m3u8";
  a.click();
}
$("path-build").onclick = buildPath;
$("path-play").onclick = () => playQueue(state.pathTracks);
$("path-export").onclick = exportPath;
$("path-clear").onclick = () => { state.pathSongs = []; renderPathSongs(); $("path-list").innerHTML = ""; };

// --- your own song ------------------------------------------------------------------
async function uploadBlob(blob, name) {
  $("upload-status").textContent = `Analysing ${name}…`;
  const form = new FormData();
  form.append("file", blob, name);
  try {
    const result = await api("/api/upload?k=10", { method: "POST", body: form });
    $("upload-status").textContent = `Songs like ${result.name}:`;
    fillTags($("upload-tags"), result.tags);
    fillTracks($("upload-results"), result.similar);
  } catch (e) { $("upload-status").textContent = e.message; }
}
$("upload-go").onclick = () => {
  const file = $("upload-file").files[0];
  if (file) uploadBlob(file, file.name); else $("upload-status").textContent = "Choose a file first.";
};
$("record").onclick = async () => {
  try {
    const stream = await navigator.mediaDevices.getUserMedia({ audio: true });
    const recorder = new MediaRecorder(stream);
    const chunks = [];
    recorder.ondataavailable = (e) => chunks.push(e.data);
    recorder.onstop = () => {
      stream.getTracks().forEach((t) => t.stop());
      uploadBlob(new Blob(chunks, { type: recorder.mimeType }), "recording.webm");
    };
    $("upload-status").textContent = "Recording 10 seconds…";
    recorder.start();
    setTimeout(() => recorder.stop(), 10000);
  } catch (e) { $("upload-status").textContent = "No microphone: " + e.message; }
};

// --- map ----------------------------------------------------------------------------
const COLOURS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
                 "#bcbd22", "#17becf", "#393b79", "#637939", "#8c6d31", "#843c39", "#7b4173", "#3182bd"];
let map = null;

async function showMap() {
  if (!map) {
    const data = await api("/api/map");
    map = { data, grid: new Map() };
  }
  const { data } = map, canvas = $("map-canvas"), ctx = canvas.getContext("2d");
  const xs = data.x, ys = data.y, n = data.ids.length;
  const low = (a) => a.reduce((m, v) => (v < m ? v : m), Infinity);
  const high = (a) => a.reduce((m, v) => (v > m ? v : m), -Infinity);
  const [x0, x1, y0, y1] = [low(xs), high(xs), low(ys), high(ys)];
  const px = (x) => 10 + (canvas.width - 20) * (x - x0) / ((x1 - x0) || 1);
  const py = (y) => canvas.height - 10 - (canvas.height - 20) * (y - y0) / ((y1 - y0) || 1);
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  map.grid = new Map();
  const size = n > 5000 ? 2 : 5;
  for (let i = 0; i < n; i++) {
    const x = px(xs[i]), y = py(ys[i]);
    ctx.fillStyle = COLOURS[data.tag[i] % COLOURS.length];
    ctx.fillRect(x - size / 2, y - size / 2, size, size);
    const key = `${Math.floor(x / 8)},${Math.floor(y / 8)}`;
    if (!map.grid.has(key)) map.grid.set(key, []);
    map.grid.get(key).push([i, x, y]);
  }
  const legend = $("map-legend");
  legend.innerHTML = "";
  const used = [...new Set(data.tag)];
  for (const t of used.slice(0, 30)) {
    const li = document.createElement("li");
    li.style.borderLeft = `10px solid ${COLOURS[t % COLOURS.length]}`;
    li.textContent = data.tags[t];
    legend.append(li);
  }
}

function nearestPoint(event) {
  const canvas = $("map-canvas"), rect = canvas.getBoundingClientRect();
  const x = (event.clientX - rect.left) * canvas.width / rect.width;
  const y = (event.clientY - rect.top) * canvas.height / rect.height;
  let best = null, bestD = 64;
  for (let gx = Math.floor(x / 8) - 1; gx <= Math.floor(x / 8) + 1; gx++) {
    for (let gy = Math.floor(y / 8) - 1; gy <= Math.floor(y / 8) + 1; gy++) {
      for (const [i, px, py] of map.grid.get(`${gx},${gy}`) || []) {
        const d = (px - x) ** 2 + (py - y) ** 2;
        if (d < bestD) { best = i; bestD = d; }
      }
    }
  }
  return best === null ? null : { index: best, x: event.clientX - rect.left, y: event.clientY - rect.top };
}
$("map-canvas").onmousemove = (event) => {
  if (!map) return;
  const hit = nearestPoint(event), tip = $("map-tip");
  tip.hidden = !hit;
  if (hit) {
    tip.textContent = map.data.labels[hit.index] + " · " + map.data.tags[map.data.tag[hit.index]];
    tip.style.left = hit.x + 12 + "px";
    tip.style.top = hit.y + 12 + "px";
  }
};
$("map-canvas").onclick = async (event) => {
  const hit = map && nearestPoint(event);
  if (hit) play(await api(`/api/tracks/${map.data.ids[hit.index]}`));
};

// --- routing ------------------------------------------------------------------------
async function route() {
  const [, view = "", arg] = location.hash.split("/");
  const name = view || "search";
  for (const section of document.querySelectorAll(".view")) section.hidden = section.id !== "view-" + name;
  for (const a of document.querySelectorAll("nav a")) a.classList.toggle("active", a.id === "nav-" + name);
  try {
    if (name === "track") await showTrack(arg);
    if (name === "map") await showMap();
    if (name === "path") renderPathSongs();
  } catch (e) { showError($("view-" + name), e); }
}
window.addEventListener("hashchange", route);

(async function start() {
  try {
    const info = await api("/api/library");
    $("library-info").textContent = `${info.tracks} tracks · ${info.model}`;
    for (const select of [$("search-tag"), $("similar-tag")]) {
      for (const tag of info.tags) {
        const option = document.createElement("option");
        option.value = option.textContent = tag;
        select.append(option);
      }
    }
    await route();
    if (!location.hash || location.hash === "#/") await search();
  } catch (e) { showError(document.querySelector("main"), e); }
})();
