// Search by passage: drag over a track's spectrogram to choose a passage, and list the tracks with passages
// like it, each playing from where its passage begins; the same for an uploaded clip or a recording.

import { api, failure, query, urls } from "./api.js";
import { playNow } from "./player.js";
import { trackRow } from "./rows.js";
import { $, button, el, emptyItem, fmtTime, plural, showError } from "./ui.js";

const MIN_DRAG = 4; // pixels: a shorter drag is a click, which chooses the passage from there
const CLICK_SECONDS = 10; // the passage a click chooses
const WINDOW = 30; // seconds of a track the spectrogram shows at a time (the server's SPECTROGRAM_SECONDS)
// seconds the Earlier and Later buttons move it: windows overlap by a click's passage, so that every passage of
// up to 10 s lies whole in one of them (the 1:23–1:35 in 1:20–1:50; with 30 s steps it straddles 1:30)
const STEP = WINDOW - CLICK_SECONDS;
let axis = null; // the shown window's time axis: { x0, x1, seconds, start } (fractions of the image's width; seconds)
let shownId = null;
let wanted = null; // the window last asked for: { track, start }

/** Draw the start of `track`'s spectrogram and let a drag over it search by passage. */
export async function showSpectrogram(track) {
  shownId = track.id;
  axis = null;
  $("passage-status").textContent = "Drag over the spectrogram to choose a passage: the tracks with passages like it are listed here.";
  $("passage-list").replaceChildren();
  $("spectrogram-nav").hidden = !(track.duration > WINDOW);
  await showWindow(track, 0);
}

/** Where the last window of `track` begins: a whole window before its end. */
const lastStart = (track) => Math.max(0, (track.duration || 0) - WINDOW);

/** Draw the window of `track`'s spectrogram that begins `start` seconds in, learning where its time axis lies. */
async function showWindow(track, start) {
  const image = $("spectrogram"), asked = { track, start };
  wanted = asked;
  $("passage-selection").hidden = true;
  $("spectrogram-earlier").disabled = start <= 0;
  $("spectrogram-later").disabled = start >= lastStart(track);
  try {
    const response = await fetch(urls.spectrogram(track.id, start), { credentials: "same-origin" });
    if (!response.ok) throw new Error(await failure(response));
    const header = response.headers.get("X-Soundalike-Time-Axis") || `0,1,${WINDOW},0`;
    const [x0, x1, seconds, from = 0] = header.split(",").map(Number);
    const blob = await response.blob();
    if (wanted !== asked) return;
    if (image.src.startsWith("blob:")) URL.revokeObjectURL(image.src);
    image.src = URL.createObjectURL(blob);
    axis = { x0, x1, seconds, start: from };
    $("spectrogram-caption").textContent = `Mel spectrogram of ${windowSpan(track, from)}: time to the right, pitch up.`;
  } catch (error) { if (wanted === asked) showError($("passage-list"), error); }
}

/** What a window from `start` shows of `track`: "all 12 seconds", "1:00–1:30 of 3:45", or (its length unknown)
 * "the first 30 seconds". */
function windowSpan({ duration }, start) {
  if (!duration) return `the first ${WINDOW} seconds`;
  if (duration <= WINDOW) return `all ${plural(Math.round(duration), "second")}`;
  return `${fmtTime(start)}–${fmtTime(Math.min(duration, start + WINDOW))} of ${fmtTime(duration)}`;
}

/** Seconds into the track at a pointer's x on the spectrogram, within the window's time axis. */
function secondsAt(event) {
  const box = $("spectrogram").getBoundingClientRect();
  const fraction = ((event.clientX - box.left) / box.width - axis.x0) / (axis.x1 - axis.x0);
  return axis.start + Math.min(axis.seconds, Math.max(0, fraction * axis.seconds));
}

/** Mark the seconds `from` to `to` (into the track) on the spectrogram. */
function drawSelection(from, to) {
  const image = $("spectrogram"), selection = $("passage-selection");
  const left = (s) => image.offsetLeft
    + image.offsetWidth * (axis.x0 + (axis.x1 - axis.x0) * (s - axis.start) / axis.seconds);
  selection.style.left = `${left(from)}px`;
  selection.style.width = `${Math.max(2, left(to) - left(from))}px`;
  selection.style.top = `${image.offsetTop}px`;
  selection.style.height = `${image.offsetHeight}px`;
  selection.hidden = false;
}

export function initPassages() {
  const image = $("spectrogram");
  let down = null; // { x, seconds } where the drag began
  image.addEventListener("pointerdown", (event) => {
    if (!axis) return;
    event.preventDefault();
    image.setPointerCapture(event.pointerId);
    down = { x: event.clientX, seconds: secondsAt(event) };
    drawSelection(down.seconds, down.seconds);
  });
  image.addEventListener("pointermove", (event) => {
    if (!down) return;
    const at = secondsAt(event);
    drawSelection(Math.min(down.seconds, at), Math.max(down.seconds, at));
  });
  image.addEventListener("pointerup", (event) => {
    if (!down) return;
    const at = secondsAt(event), click = Math.abs(event.clientX - down.x) < MIN_DRAG;
    const start = click ? down.seconds : Math.min(down.seconds, at);
    const end = click ? Math.min(axis.start + axis.seconds, start + CLICK_SECONDS) : Math.max(down.seconds, at);
    down = null;
    drawSelection(start, end);
    searchTrack(shownId, start, end);
  });
  image.addEventListener("dragstart", (event) => event.preventDefault());
  $("spectrogram-earlier").addEventListener("click", () => showWindow(wanted.track, Math.max(0, wanted.start - STEP)));
  $("spectrogram-later").addEventListener("click",
    () => showWindow(wanted.track, Math.min(wanted.start + STEP, lastStart(wanted.track))));
}

const SAME_AUDIO = "This track holds the passage's own audio (the recording it was cut from, or a repeat of it), "
  + "so it comes first whatever its score.";

/** A match as a row: its track (marked when it holds the passage's own audio), and a button that plays it from
 * where its passage begins. */
function matchRow(match, seedName) {
  return trackRow(match, { why: el("div", { class: "why" }, el("p", { class: "passage small" },
    match.own_audio ? el("span", { class: "same-audio", title: SAME_AUDIO }, "same audio") : null,
    `Its passage at ${fmtTime(match.start)} sounds like ${seedName}. `,
    button(`Play from ${fmtTime(match.start)}`, "play", () => playNow(match, match.start),
           { className: "small passage-play" }))) });
}

function showMatches(list, status, answer) {
  const seedName = `${fmtTime(answer.start)}–${fmtTime(answer.end)} of “${answer.name}”`;
  status.textContent = `Passages like ${seedName}:`;
  list.replaceChildren(...answer.matches.map((m) => matchRow(m, "this passage")));
  if (!answer.matches.length) list.append(emptyItem("No other track in the library yet."));
}

async function searchTrack(id, start, end) {
  const list = $("passage-list"), status = $("passage-status");
  status.textContent = `Listening for passages like ${fmtTime(start)}–${fmtTime(end)}…`;
  list.replaceChildren();
  try {
    const answer = await api(`/api/tracks/${id}/passages?` + query({ start: start.toFixed(2), end: end.toFixed(2), k: 10 }));
    if (shownId === id) showMatches(list, status, answer);
  } catch (error) {
    if (shownId === id) { status.textContent = ""; showError(list, error); }
  }
}

/** The tracks with passages like an uploaded clip or a recording (`blob`, called `name`). */
export async function showUploadPassages(blob, name) {
  const list = $("upload-passages"), status = $("upload-passages-status");
  status.textContent = `Listening for passages like ${name}…`;
  list.replaceChildren();
  const form = new FormData();
  form.append("file", blob, name);
  try {
    showMatches(list, status, await api("/api/passages/upload?k=10", { method: "POST", body: form }));
  } catch (error) { status.textContent = ""; showError(list, error); }
}
