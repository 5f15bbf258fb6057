// The player bar and its queue: what plays, what comes next, the Media Session (media keys, lock screen).

import { audioProblem, tracksById, urls } from "./api.js";
import { setIcon } from "./icons.js";
import { feel, listened } from "./listening.js";
import { toast } from "./rows.js";
import { $, artistName, button, el, fmtTime, trackCover, trackTitle } from "./ui.js";

const audio = $("player");
const MAX_FAILURES = 5; // tracks in a row that cannot play before the player stops moving on
const RESTART_AFTER = 3; // seconds into a track after which "previous" restarts it
const VOLUME_KEY = "soundalike.volume";
const QUEUE_KEY = "soundalike.queue"; // localStorage: {ids: the queue's track ids, index: the one loaded}
const SEEK_STEP = 10; // seconds the arrow keys skip

/** "queue" (its content or position changed) and "track" (another track is loaded) events */
export const events = new EventTarget();
const state = {
  queue: [], // entries {key, track}: the same track may be queued twice
  index: -1, // the entry loaded in the player; -1 none
  autofill: null, // async () => track | null: what comes when the queue runs out (the radio)
  filling: null, // the autofill under way
  failures: 0, // tracks in a row that could not play
  keys: 0,
  started: false, // the loaded track has played (so leaving it is a play or a skip)
};

const changed = (what) => events.dispatchEvent(new Event(what));
const entry = (track) => ({ key: ++state.keys, track });
export const current = () => state.queue[state.index]?.track || null;
export const upcoming = () => state.queue.length - state.index - 1;

// --- what plays -----------------------------------------------------------------------------------
function load(index, start = 0) {
  leave();
  state.index = index;
  const track = current();
  if (!state.failures) hideError(); // else it says why the player moved on to this track
  audio.src = urls.audio(track.id) + (start ? `#t=${start}` : "");
  audio.play().catch(() => { /* refused autoplay or an unplayable source: the error event tells */ });
  showTrack(track);
  changed("track");
  changed("queue");
  if (!upcoming()) fill();
}

/** Play `track` now (from `start` seconds), before the rest of the queue. */
export function playNow(track, start = 0) {
  state.queue.splice(state.index + 1, 0, entry(track));
  load(state.index + 1, start);
}

/** Queue `track` to play after the current one. */
export function playNext(track) {
  state.queue.splice(state.index + 1, 0, entry(track));
  changed("queue");
}

/** Queue `tracks` at the end. */
export function enqueue(...tracks) {
  state.queue.push(...tracks.map(entry));
  changed("queue");
}

/** Replace the queue with `tracks` and play the first; `autofill` (see state) continues it. */
export function playAll(tracks, autofill = null) {
  state.queue = tracks.map(entry);
  state.autofill = autofill;
  state.filling = null;
  if (tracks.length) load(0); else stop();
}

/** What continues the queue when it runs out (null: nothing). */
export const autofilling = () => state.autofill;

/** Stop continuing the queue with `autofill` (when it is the one running). */
export function stopAutofill(autofill) {
  if (state.autofill === autofill) state.autofill = null;
}

async function fill() {
  const autofill = state.autofill;
  if (!autofill) return;
  if (!state.filling) {
    state.filling = autofill().then((track) => {
      if (track && state.autofill === autofill) enqueue(track);
    }).catch((error) => showError(error.message)).finally(() => { state.filling = null; });
  }
  await state.filling;
}

export async function next() {
  if (!upcoming()) await fill();
  if (upcoming()) load(state.index + 1);
}

export function previous() {
  if (audio.currentTime > RESTART_AFTER || state.index <= 0) audio.currentTime = 0;
  else load(state.index - 1);
}

export function togglePlay() {
  if (!audio.getAttribute("src")) { if (state.queue.length) load(Math.max(state.index, 0)); } // none loaded yet
  else if (audio.paused) audio.play().catch(() => {});
  else audio.pause();
}

/** Skip `seconds` (back when negative) in the track that plays. */
export function seekBy(seconds) {
  if (!audio.getAttribute("src")) return;
  audio.currentTime = Math.min(Math.max(0, audio.currentTime + seconds), audio.duration || 0);
}

export const seekForward = () => seekBy(SEEK_STEP);
export const seekBack = () => seekBy(-SEEK_STEP);
export const toggleMute = () => { audio.muted = !audio.muted; };

/** Tell the server where the listener left the track that was playing (`ended`: it played to its end). */
function leave(ended = false) {
  const track = current();
  if (track && state.started) listened(track, ended ? audio.duration || audio.currentTime : audio.currentTime, ended);
  state.started = false;
}

/** Like or dislike the track that plays; a disliked one is left at once (and never played by a radio again). */
export async function rate(kind) {
  const track = current();
  if (!track) return;
  try {
    await feel(track, kind);
  } catch (error) {
    showError(error.message);
    return;
  }
  if (kind === "like") {
    $("like").setAttribute("aria-pressed", "true");
    toast(`Liked “${trackTitle(track)}”: radios play more like it.`);
  } else {
    toast(`Disliked “${trackTitle(track)}”: it will not be played again.`);
    if (current() === track) { state.started = false; await next(); }
  }
}

function stop() {
  leave();
  audio.pause();
  audio.removeAttribute("src");
  audio.load();
  state.index = -1;
  showTrack(null);
  changed("track");
  changed("queue");
}

// --- the queue ------------------------------------------------------------------------------------
export function jump(index) {
  load(index);
}

export function remove(index) {
  const wasCurrent = index === state.index;
  state.queue.splice(index, 1);
  if (index < state.index) state.index -= 1;
  if (!wasCurrent) changed("queue");
  else if (state.index < state.queue.length) load(state.index);
  else stop();
}

export function move(from, to) {
  if (to < 0 || to >= state.queue.length || from === to) return;
  const playing = state.queue[state.index];
  const [moved] = state.queue.splice(from, 1);
  state.queue.splice(to, 0, moved);
  state.index = state.queue.indexOf(playing);
  changed("queue");
}

export function clearQueue() {
  state.autofill = null;
  state.queue = state.queue.slice(state.index, state.index + 1);
  state.index = state.queue.length ? 0 : -1;
  changed("queue");
}

function queueRow(item, index) {
  const track = item.track;
  const li = el("li", { class: "track queue-item" + (index === state.index ? " playing" : ""), draggable: "true",
                        dataset: { id: track.id, index } },
    el("span", { class: "drag-handle", "aria-hidden": "true", title: "Drag to reorder" }, "⋮⋮"),
    trackCover(track, "tiny"),
    el("div", { class: "track-text" },
      el("button", { type: "button", class: "link title", onclick: () => jump(index),
                     title: "Play this now" }, trackTitle(track)),
      el("span", { class: "muted small" }, artistName(track.artist))),
    el("div", { class: "row-actions" },
      button("Move up", "up", () => move(index, index - 1), { iconOnly: true, className: "move-up" }),
      button("Move down", "down", () => move(index, index + 1), { iconOnly: true, className: "move-down" }),
      button("Remove from the queue", "close", () => remove(index), { iconOnly: true, className: "remove" })));
  li.addEventListener("dragstart", (e) => { e.dataTransfer.setData("text/x-queue-index", String(index)); li.classList.add("dragging"); });
  li.addEventListener("dragend", () => li.classList.remove("dragging"));
  li.addEventListener("dragover", (e) => { e.preventDefault(); li.classList.add("drop-target"); });
  li.addEventListener("dragleave", () => li.classList.remove("drop-target"));
  li.addEventListener("drop", (e) => {
    e.preventDefault();
    const from = Number(e.dataTransfer.getData("text/x-queue-index"));
    if (Number.isInteger(from)) move(from, index);
  });
  return li;
}

function renderQueue() {
  const list = $("queue-list");
  list.replaceChildren(...state.queue.map(queueRow));
  if (!state.queue.length) {
    list.append(el("li", { class: "empty" }, el("p", { class: "empty-title" }, "The queue is empty."),
      el("p", { class: "muted" }, "Add tracks with the + button of any track, or start a radio from a track's page.")));
  }
  const count = $("queue-count");
  count.hidden = upcoming() <= 0;
  count.textContent = upcoming();
}

// --- kept over reloads: the queue's track ids and the one loaded ------------------------------------
function saveQueue() {
  localStorage.setItem(QUEUE_KEY, JSON.stringify({ ids: state.queue.map((e) => e.track.id), index: state.index }));
}

/** The queue of an earlier visit, without the tracks the library no longer has; its track loaded, not played. */
export async function restoreQueue() {
  let saved;
  try { saved = JSON.parse(localStorage.getItem(QUEUE_KEY)); } catch { return; }
  const ids = (Array.isArray(saved?.ids) ? saved.ids : []).filter(Number.isInteger);
  if (!ids.length || state.queue.length) return; // nothing saved, or tracks were queued meanwhile
  const known = await tracksById(ids);
  if (state.queue.length) return;
  const kept = ids.map((id, i) => [known.get(id), i]).filter(([track]) => track);
  state.queue = kept.map(([track]) => entry(track));
  const index = kept.findIndex(([, i]) => i >= saved.index); // the loaded one, or the next one kept
  state.index = saved.index >= 0 && state.queue.length ? (index < 0 ? state.queue.length - 1 : index) : -1;
  showTrack(current());
  changed("queue");
}

export function toggleQueue(open = $("queue-panel").hidden) {
  $("queue-panel").hidden = !open;
  $("queue-toggle").setAttribute("aria-expanded", String(open));
  $("queue-toggle").classList.toggle("active", open);
}

// --- the player bar -------------------------------------------------------------------------------
function showTrack(track) {
  const title = $("now-title");
  title.textContent = track ? trackTitle(track) : "Nothing playing";
  title.href = track ? `#/track/${track.id}` : "#/";
  $("now-artist").textContent = track ? artistName(track.artist) : "";
  $("like").disabled = $("dislike").disabled = !track;
  $("like").setAttribute("aria-pressed", "false");
  const art = track ? trackCover(track, "small-cover") : el("div", { class: "cover small-cover empty-cover", icon: "music" });
  art.id = "now-cover";
  $("now-cover").replaceWith(art);
  document.title = track ? `${trackTitle(track)} · soundalike` : "soundalike";
  for (const row of document.querySelectorAll("li.track:not(.queue-item)")) {
    row.classList.toggle("playing", !!track && row.dataset.id === String(track.id));
  }
  mediaMetadata(track);
}

function showError(message) {
  $("player-error").textContent = message;
  $("player-error").hidden = false;
}

function hideError() {
  $("player-error").hidden = true;
}

/** "Track 8's file…" as "track 8's file…" (but "MP3 …" stays). */
const lowerFirst = (text) => (/^[A-Z][a-z]/.test(text) ? text[0].toLowerCase() + text.slice(1) : text);

async function cannotPlay() {
  const track = current();
  if (!track) return;
  const code = audio.error?.code;
  const fallback = code === 4 ? "the browser cannot decode its audio" : `the browser stopped (${audio.error?.message || "media error " + code})`;
  const reason = await audioProblem(track.id, fallback);
  if (current() !== track) return; // the user moved on meanwhile
  const words = /cannot be played/.test(reason) ? reason : `“${trackTitle(track)}” cannot be played: ${lowerFirst(reason)}`;
  state.failures += 1;
  const moveOn = state.failures < MAX_FAILURES && (upcoming() > 0 || state.autofill);
  showError(moveOn ? `${words} Moved on to the next track.` : words);
  if (moveOn) await next();
}

function showTimes() {
  const seek = $("seek");
  const duration = Number.isFinite(audio.duration) ? audio.duration : 0;
  seek.max = duration;
  if (!seek.matches(":active")) seek.value = audio.currentTime;
  seek.style.setProperty("--progress", duration ? `${(100 * seek.value) / duration}%` : "0%");
  $("time-now").textContent = fmtTime(+seek.value);
  $("time-total").textContent = fmtTime(duration);
}

function showPlaying() {
  const playing = !audio.paused;
  const b = $("play-pause");
  setIcon(b, playing ? "pause" : "play");
  b.setAttribute("aria-label", playing ? "Pause (space)" : "Play (space)");
  b.title = b.getAttribute("aria-label");
  if ("mediaSession" in navigator) navigator.mediaSession.playbackState = playing ? "playing" : "paused";
}

function showVolume() {
  const vol = $("volume");
  vol.value = audio.muted ? 0 : audio.volume;
  vol.style.setProperty("--progress", `${100 * vol.value}%`);
  setIcon($("mute"), audio.muted || audio.volume === 0 ? "muted" : "volume");
  $("mute").setAttribute("aria-label", audio.muted ? "Unmute" : "Mute");
}

// --- Media Session ------------------------------------------------------------------------------
function mediaMetadata(track) {
  if (!("mediaSession" in navigator)) return;
  navigator.mediaSession.metadata = track ? new MediaMetadata({
    title: trackTitle(track), artist: artistName(track.artist), album: track.album || "",
    artwork: [{ src: new URL(urls.cover(track.id), location.href).href }],
  }) : null;
}

function mediaPosition() {
  if (!("mediaSession" in navigator) || !Number.isFinite(audio.duration)) return;
  navigator.mediaSession.setPositionState({ duration: audio.duration, position: Math.min(audio.currentTime, audio.duration),
                                            playbackRate: audio.playbackRate });
}

function mediaHandlers() {
  if (!("mediaSession" in navigator)) return;
  const handlers = {
    play: () => audio.play(), pause: () => audio.pause(), previoustrack: previous, nexttrack: next,
    seekto: (d) => { audio.currentTime = d.seekTime; },
    seekbackward: (d) => seekBy(-(d.seekOffset || SEEK_STEP)),
    seekforward: (d) => seekBy(d.seekOffset || SEEK_STEP),
  };
  for (const [action, handler] of Object.entries(handlers)) {
    try { navigator.mediaSession.setActionHandler(action, handler); } catch { /* not supported here */ }
  }
}

export function initPlayer() {
  audio.volume = Number(localStorage.getItem(VOLUME_KEY) ?? 1);
  audio.addEventListener("error", cannotPlay);
  audio.addEventListener("playing", () => { state.failures = 0; state.started = true; });
  audio.addEventListener("ended", () => { leave(true); next(); });
  audio.addEventListener("play", showPlaying);
  audio.addEventListener("pause", showPlaying);
  audio.addEventListener("timeupdate", showTimes);
  audio.addEventListener("durationchange", showTimes);
  audio.addEventListener("loadedmetadata", mediaPosition);
  audio.addEventListener("seeked", mediaPosition);
  audio.addEventListener("volumechange", showVolume);
  $("play-pause").onclick = togglePlay;
  $("next").onclick = next;
  $("prev").onclick = previous;
  $("seek").oninput = showTimes;
  $("seek").onchange = () => { audio.currentTime = +$("seek").value; };
  $("volume").oninput = () => {
    audio.muted = false;
    audio.volume = +$("volume").value;
    localStorage.setItem(VOLUME_KEY, audio.volume);
  };
  $("mute").onclick = toggleMute;
  $("like").onclick = () => rate("like");
  $("dislike").onclick = () => rate("dislike");
  $("queue-toggle").onclick = () => toggleQueue();
  $("queue-close").onclick = () => toggleQueue(false);
  $("queue-clear").onclick = clearQueue;
  $("player-error").onclick = hideError;
  events.addEventListener("queue", renderQueue);
  events.addEventListener("queue", saveQueue);
  mediaHandlers();
  renderQueue();
  showVolume();
  showPlaying();
}
