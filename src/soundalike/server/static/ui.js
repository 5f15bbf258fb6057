// Small DOM helpers shared by the views: elements, times, covers, chips, messages, endless lists, the theme.

import { icon, setIcon } from "./icons.js";
import { urls } from "./api.js";

export const $ = (id) => document.getElementById(id);

/** settings a test or a tinkerer may set before the page loads (window.soundalikeSettings) */
export const settings = { pageSize: 50, prefetchPx: 600, ...(window.soundalikeSettings || {}) };

/** A new element: `props` are attributes (on* are listeners, class, dataset); children are nodes or text. */
export function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else if (key === "class") node.className = value;
    else if (key === "dataset") Object.assign(node.dataset, value);
    else if (key === "icon") node.append(icon(value));
    else node.setAttribute(key, value === true ? "" : value);
  }
  node.append(...children.flat(Infinity).filter((c) => c !== null && c !== undefined && c !== false && c !== ""));
  return node;
}

/** A button with an icon; `label` is shown, or only read out and shown on hover when `iconOnly`. */
export function button(label, iconName, onclick, { iconOnly = false, primary = false, className = "" } = {}) {
  const classes = [iconOnly ? "icon-button" : "button", primary ? "primary" : "", className].filter(Boolean);
  const b = el("button", { type: "button", class: classes.join(" "), onclick,
                           "aria-label": iconOnly ? label : null, title: iconOnly ? label : null },
               iconOnly ? null : label);
  setIcon(b, iconName);
  return b;
}

/** Seconds as m:ss (or h:mm:ss). */
export function fmtTime(seconds) {
  if (!Number.isFinite(seconds) || seconds < 0) return "0:00";
  const s = Math.floor(seconds), h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60);
  const ss = String(s % 60).padStart(2, "0");
  return h ? `${h}:${String(m).padStart(2, "0")}:${ss}` : `${m}:${ss}`;
}

/** A duration in words for a list: "43 s", "43 min" or "1 h 12 min". */
export function fmtLength(seconds) {
  const minutes = Math.round((seconds || 0) / 60);
  if (!minutes) return `${Math.round(seconds || 0)} s`;
  return minutes >= 60 ? `${Math.floor(minutes / 60)} h ${minutes % 60} min` : `${minutes} min`;
}

export const plural = (n, word) => `${n} ${word}${n === 1 ? "" : "s"}`;
/** A file's name without its folder and extension ("a/b.00010.wav" -> "b.00010"), as the command line shows it. */
export const fileStem = (path) => (path || "").split("/").pop().replace(/(.)\.[^.]*$/, "$1");
export const trackTitle = (t) => t.title || fileStem(t.path) || `Track ${t.id}`;
export const artistName = (name) => name || "Unknown artist";
export const albumName = (name) => name || "Unknown album";

// --- cover art ----------------------------------------------------------------------------------
const noCover = new Set(); // track ids whose cover answered 404: not asked again

function hue(text) {
  let h = 0;
  for (const c of text) h = (h * 31 + c.codePointAt(0)) % 360;
  return h;
}

/** Two letters for a placeholder cover: of the first two words with a letter ("classical.00010" -> "CL"). */
function initials(text) {
  const all = text.replace(/[^\p{L}\p{N} ]/gu, " ").split(/\s+/).filter(Boolean);
  const lettered = all.filter((w) => /\p{L}/u.test(w));
  const words = lettered.length ? lettered : all;
  return (words.length > 1 ? words[0][0] + words[1][0] : (words[0] || "?").slice(0, 2)).toUpperCase();
}

/** The cover of track `id` (null: none), over a placeholder of `name`'s initials on a colour of its own. */
export function cover(id, name, className = "") {
  const box = el("div", { class: `cover ${className}`, style: `--hue: ${hue(name || "?")}` },
                 el("span", { "aria-hidden": "true" }, initials(name || "?")));
  if (id !== null && id !== undefined && !noCover.has(id)) {
    const img = el("img", { src: urls.cover(id), alt: "", loading: "lazy", decoding: "async" });
    img.addEventListener("error", () => { noCover.add(id); img.remove(); }, { once: true });
    img.addEventListener("load", () => box.classList.add("has-art"), { once: true });
    box.append(img);
  }
  return box;
}

/** The cover of a track (named after its album, or its title when it has none). */
export const trackCover = (track, className = "") => cover(track.id, track.album || trackTitle(track), className);

// --- chips, messages ------------------------------------------------------------------------------
/** Tag chips; with `percent`, each says how sure the model is. */
export function chips(list, tags, { percent = false } = {}) {
  list.replaceChildren(...tags.map((t) => el("li", { class: "chip" },
    typeof t === "string" ? t : t.tag,
    percent && typeof t !== "string" ? el("span", { class: "chip-value" }, `${Math.round(100 * t.probability)}%`) : null)));
}

/** A message in place of a list's items: what is empty and what to do about it. */
export function emptyItem(title, hint = "") {
  return el("li", { class: "empty" }, el("p", { class: "empty-title" }, title),
            hint ? el("p", { class: "muted" }, ...hintNodes(hint)) : null);
}

/** Text with `code` spans written as `backticks`. */
function hintNodes(text) {
  return text.split("`").map((part, i) => (i % 2 ? el("code", {}, part) : part));
}

export function errorItem(error) {
  return el("li", { class: "error", role: "alert" }, error.message);
}

/** Show `error` in the list or element `where` in place of its content. */
export function showError(where, error) {
  where.replaceChildren(where.tagName === "OL" || where.tagName === "UL" ? errorItem(error)
    : el("p", { class: "error", role: "alert" }, error.message));
}

// --- endless lists --------------------------------------------------------------------------------
/**
 * Fill `list` page after page as it is scrolled: `fetchPage(offset, limit)` -> items,
 * `render(item)` -> an element, `empty()` -> the element shown when there is none.
 * Replaces whatever paging the list had.
 */
export function endless(list, { fetchPage, render, empty, count = null }) {
  if (list.pager) list.pager.disconnect();
  const sentinel = el("li", { class: "sentinel", "aria-hidden": "true" });
  const status = el("li", { class: "loading-more muted", role: "status" }, el("span", { class: "spinner" }), "Loading…");
  list.replaceChildren(sentinel);
  let offset = 0, loading = false, done = false;
  const observer = new IntersectionObserver((entries) => { if (entries.some((e) => e.isIntersecting)) more(); },
                                            { rootMargin: `0px 0px ${settings.prefetchPx}px 0px` });
  const pager = { disconnect: () => { done = true; observer.disconnect(); } };
  list.pager = pager;

  const nearBottom = () => sentinel.isConnected &&
    sentinel.getBoundingClientRect().top < innerHeight + settings.prefetchPx;

  async function more() {
    if (loading || done) return;
    loading = true;
    sentinel.before(status);
    try {
      const items = await fetchPage(offset, settings.pageSize);
      if (list.pager !== pager) return;
      sentinel.before(...items.map(render));
      offset += items.length;
      done = items.length < settings.pageSize;
      if (!offset) sentinel.before(empty());
      else if (done && count) sentinel.before(el("li", { class: "list-end muted" }, count(offset)));
    } catch (error) {
      done = true;
      sentinel.before(errorItem(error));
    } finally {
      status.remove();
      loading = false;
    }
    if (done) observer.disconnect();
    else if (nearBottom()) more();
    else { // re-armed: a sentinel pushed out and scrolled back before the observer looked is seen again
      observer.unobserve(sentinel);
      observer.observe(sentinel);
    }
  }
  observer.observe(sentinel);
  return pager;
}

// --- theme ----------------------------------------------------------------------------------------
const THEME_KEY = "soundalike.theme";
const systemDark = matchMedia("(prefers-color-scheme: dark)");

export const currentTheme = () => document.documentElement.dataset.theme || (systemDark.matches ? "dark" : "light");

/** Follow the system's theme until the toggle picks one, remembered in localStorage. */
export function initTheme(toggle) {
  const stored = localStorage.getItem(THEME_KEY);
  if (stored === "light" || stored === "dark") document.documentElement.dataset.theme = stored;
  const show = () => {
    const other = currentTheme() === "dark" ? "light" : "dark";
    toggle.setAttribute("aria-label", `Switch to the ${other} theme`);
    toggle.title = `Switch to the ${other} theme`;
    setIcon(toggle, other === "dark" ? "moon" : "sun");
  };
  toggle.addEventListener("click", () => {
    const theme = currentTheme() === "dark" ? "light" : "dark";
    document.documentElement.dataset.theme = theme;
    localStorage.setItem(THEME_KEY, theme);
    show();
    document.dispatchEvent(new Event("themechange"));
  });
  systemDark.addEventListener("change", () => { show(); document.dispatchEvent(new Event("themechange")); });
  show();
}
