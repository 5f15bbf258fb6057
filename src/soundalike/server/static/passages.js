// Search by passage: drag over a track's spectrogram to choose a passage, and list the tracks with passages
// like it, each playing from where its passage begins; the same for an uploaded clip or a recording.

import { api, failure, query, urls } from "./api.js";
import { playNow } from "./player.js";
import { trackRow } from "./rows.js";
import { $, button, el, emptyItem, fmtTime, showError } from "./ui.js";

const MIN_DRAG = 4; // pixels: a shorter drag is a click, which chooses the passage from there
const CLICK_SECONDS = 10; // the passage a click chooses
let axis = null; // the spectrogram's time axis: { x0, x1, seconds } (fractions of the image's width)
let shownId = null;

/** Draw `track`'s spectrogram (learning where its time axis lies) and let a drag over it search by passage. */
export async function showSpectrogram(track) {
  const image = $("spectrogram");
  shownId = track.id;
  axis = null;
  $("passage-selection").hidden = true;
  $("passage-status").textContent = "Drag over the spectrogram to choose a passage: the tracks with passages like it are listed here.";
  $("passage-list").replaceChildren();
  try {
    const response = await fetch(urls.spectrogram(track.id), { credentials: "same-origin" });
    if (!response.ok) throw new Error(await failure(response));
    const [x0, x1, seconds] = (response.headers.get("X-Soundalike-Time-Axis") || "0,1,30").split(",").map(Number);
    const blob = await response.blob();
    if (shownId !== track.id) return;
    if (image.src.startsWith("blob:")) URL.revokeObjectURL(image.src);
    image.src = URL.createObjectURL(blob);
    axis = { x0, x1, seconds };
  } catch (error) { showError($("passage-list"), error); }
}

/** Seconds at a pointer's x on the spectrogram, within its time axis. */
function secondsAt(event) {
  const box = $("spectrogram").getBoundingClientRect();
  const fraction = ((event.clientX - box.left) / box.width - axis.x0) / (axis.x1 - axis.x0);
  return Math.min(axis.seconds, Math.max(0, fraction * axis.seconds));
}

function drawSelection(from, to) {
  const image = $("spectrogram"), selection = $("passage-selection");
  const left = (s) => image.offsetLeft + image.offsetWidth * (axis.x0 + (axis.x1 - axis.x0) * s / axis.seconds);
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
    const end = click ? Math.min(axis.seconds, start + CLICK_SECONDS) : Math.max(down.seconds, at);
    down = null;
    drawSelection(start, end);
    searchTrack(shownId, start, end);
  });
  image.addEventListener("dragstart", (event) => event.preventDefault());
}

/** A match as a row: its track, and a button that plays it from where its passage begins. */
function matchRow(match, seedName) {
  return trackRow(match, { why: el("div", { class: "why" }, el("p", { class: "passage small" },
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
