// soundalike's page: plain JavaScript modules over the HTTP API (see /docs), no build step.
// Views are sections of index.html shown by the address's #/view/argument.

import { api, SIGNED_OUT } from "./api.js";
import { forgetBrowsing, initLibrary, showAlbum, showAlbums, showArtist, showArtists, showLibrary,
         showTrack } from "./browse.js";
import { initFamilies, showFamilies } from "./families.js";
import { drawIcons } from "./icons.js";
import { initMap, showMap } from "./map.js";
import { addToPath, initMixes, restorePath, showPath, showRadio, startRadio } from "./mixes.js";
import { initPassages } from "./passages.js";
import { initPlayer, next, previous, rate, restoreQueue, seekBack, seekForward, toggleMute, togglePlay,
         toggleQueue } from "./player.js";
import { $, initTheme, plural, showError } from "./ui.js";

const VIEWS = {
  library: () => showLibrary(),
  artists: showArtists,
  albums: showAlbums,
  artist: (name) => showArtist(name),
  album: (artist, album) => showAlbum(artist, album),
  track: (id) => showTrack(id, { onRadio: startRadio, onPath: addToPath }),
  radio: showRadio,
  path: showPath,
  upload: () => {},
  map: showMap,
  families: showFamilies,
};
const NAV_OF = { artist: "artists", album: "albums", track: "library" }; // the menu entry a page belongs to

async function route() {
  const [, view = "", ...args] = location.hash.split("/");
  const name = VIEWS[view] ? view : "library";
  for (const section of document.querySelectorAll(".view")) section.hidden = section.id !== `view-${name}`;
  for (const a of document.querySelectorAll("#nav a")) {
    const active = a.dataset.view === (NAV_OF[name] || name);
    a.classList.toggle("active", active);
    if (active) a.setAttribute("aria-current", "page"); else a.removeAttribute("aria-current");
  }
  openMenu(false);
  window.scrollTo(0, 0);
  try {
    await VIEWS[name](...args.map(decodeURIComponent));
  } catch (error) {
    showError($("banner"), error);
    $("banner").hidden = false;
    return;
  }
  $("banner").hidden = true;
}

// --- keyboard -------------------------------------------------------------------------------------
const TYPING = "input, textarea, select, [contenteditable], [contenteditable] *";
const SHORTCUTS = {
  " ": togglePlay, j: next, k: previous, ArrowRight: seekForward, ArrowLeft: seekBack, m: toggleMute,
  "/": () => { location.hash = "#/"; $("search-input").focus(); },
  "?": () => $("shortcuts").showModal(),
  q: () => toggleQueue(),
  l: () => rate("like"),
};

function onKey(event) {
  if (event.ctrlKey || event.metaKey || event.altKey || event.target.closest?.(TYPING)) return;
  if (event.key === " " && event.target.closest?.("button, a, summary")) return; // space presses what has focus
  if ($("shortcuts").open) return;
  const action = SHORTCUTS[event.key];
  if (!action) return;
  event.preventDefault();
  action();
}

// --- the frame ------------------------------------------------------------------------------------
function openMenu(open) {
  $("sidebar").classList.toggle("open", open);
  $("menu-button").setAttribute("aria-expanded", String(open));
}

async function showSignOut() {
  // a server with a token answers the page without a session (no cookies) with its sign-in form
  try {
    const page = await (await fetch("/", { credentials: "omit", cache: "no-store" })).text();
    $("signout-form").hidden = !page.includes('action="/signin"');
  } catch { /* the server's answer to the real requests tells */ }
}

async function start() {
  drawIcons();
  initTheme($("theme-toggle"));
  initPlayer();
  initMixes();
  initPassages();
  initMap();
  initFamilies();
  $("menu-button").onclick = () => openMenu(!$("sidebar").classList.contains("open"));
  $("shortcuts-button").onclick = () => $("shortcuts").showModal();
  document.addEventListener("keydown", onKey);
  window.addEventListener("hashchange", route);
  try {
    const info = await api("/api/library");
    $("library-info").textContent = `${plural(info.tracks, "track")} · ${info.model || "no model yet"}`;
    initLibrary(info.tags || []);
  } catch (error) {
    showError($("banner"), error);
    $("banner").hidden = false;
    if (error.message === SIGNED_OUT) return;
  }
  forgetBrowsing();
  showSignOut();
  try {
    await Promise.all([restoreQueue(), restorePath()]);
  } catch { /* the queue and path start empty; the views say why the server cannot be read */ }
  await route();
  document.body.dataset.ready = "true";
}

start();
