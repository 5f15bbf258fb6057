// Playing by sound: a radio from a track, a path between songs, songs like one of yours.

import { api, post, sentence, tracksById } from "./api.js";
import { profile } from "./listening.js";
import { showUploadPassages } from "./passages.js";
import { autofilling, playAll, stopAutofill } from "./player.js";
import { toast, trackRow, why } from "./rows.js";
import { $, button, chips, el, emptyItem, plural, showError, trackTitle } from "./ui.js";

// --- radio ----------------------------------------------------------------------------------------
let radio = null; // {seed, history: ids played or queued, autofill}

/** An autofill that asks `ask(history)` for each next track; `done` says why it stopped when it returns none. */
function radioAutofill(ask, history, done) {
  const autofill = async () => {
    const track = await ask(history);
    if (radio?.autofill !== autofill) return null;
    if (!track) { radioStatus(done); return null; }
    history.push(track.id);
    $("radio-history").append(radioRow(track));
    return track;
  };
  return autofill;
}

/** A track the radio picked, with why when the listener's likes and skips steered it. */
const radioRow = (track) => trackRow(track, { why: track.why ? el("p", { class: "why small muted" }, sentence(track.why)) : null });

function begin(autofill, first, status) {
  radio = { autofill };
  $("radio-history").replaceChildren();
  radioStatus(status);
  setRadioButtons(true);
  playAll([first], autofill);
  location.hash = "#/radio";
}

export function startRadio(seed) {
  const ask = (history) => post("/api/radio/next", { seeds: [seed.id], history, keep_on: +$("keep-on").value,
                                                     drunk: +$("drunk").value, profile });
  begin(radioAutofill(ask, [seed.id], `The radio from “${trackTitle(seed)}” has played every track of the library.`),
        seed, `Radio from “${trackTitle(seed)}”: each next track sounds like the last ones, and moves away from what you skip.`);
}

/** "For you": no seed, near what the profile liked and played through, away from what it skipped. */
async function startForYou() {
  const ask = (history) => post("/api/foryou/next", { history, drunk: +$("drunk").value, profile });
  let first;
  try {
    first = await ask([]);
  } catch (error) {
    radioStatus(/no liked or long-played tracks/i.test(error.message) ? "Nothing to go on yet: like a few tracks " +
                "(the heart in the player) or play some to their end, then ask again." : error.message);
    return;
  }
  if (!first) { radioStatus("Every track near what you like has been played."); return; }
  const history = [first.id];
  begin(radioAutofill(ask, history, "The mix has played every track near what you like."), first,
        "For you: tracks near what you liked, taking turns between the kinds of music you love.");
  $("radio-history").append(radioRow(first));
}

/** The radio view: says so when something else took over the queue since the radio started. */
export function showRadio() {
  if (radio && autofilling() !== radio.autofill) stopRadio();
}

function stopRadio() {
  if (!radio) return;
  stopAutofill(radio.autofill);
  radio = null;
  radioStatus("The radio is off. The tracks it queued stay in the queue.");
  setRadioButtons(false);
}

function radioStatus(text) {
  $("radio-status").textContent = text;
}

function setRadioButtons(on) {
  $("radio-skip").disabled = $("radio-stop").disabled = !on;
}

// --- path -----------------------------------------------------------------------------------------
const PATH_KEY = "soundalike.path"; // localStorage: the ids of the songs to go through
const path = { songs: [], tracks: [] }; // the songs to go through; the journey built through them

/** The songs changed: remember them, forget the journey built through the old ones, show them. */
function songsChanged() {
  localStorage.setItem(PATH_KEY, JSON.stringify(path.songs.map((t) => t.id)));
  showJourney([]);
  showPath();
}

export function addToPath(track) {
  path.songs.push(track);
  songsChanged();
  toast(`Added “${trackTitle(track)}” to the path (${plural(path.songs.length, "song")}).`);
  location.hash = "#/path";
}

function moveSong(from, to) {
  if (to < 0 || to >= path.songs.length) return;
  path.songs.splice(to, 0, ...path.songs.splice(from, 1));
  songsChanged();
}

function removeSong(index) {
  path.songs.splice(index, 1);
  songsChanged();
}

/** The songs saved by an earlier visit, those the library still has. */
export async function restorePath() {
  const ids = JSON.parse(localStorage.getItem(PATH_KEY) || "[]");
  if (!ids.length) return;
  const known = await tracksById(ids);
  path.songs = ids.filter((id) => known.has(id)).map((id) => known.get(id));
  if (path.songs.length !== ids.length) localStorage.setItem(PATH_KEY, JSON.stringify(path.songs.map((t) => t.id)));
}

function songRow(track, index) {
  const name = `“${trackTitle(track)}”`;
  return trackRow(track, { number: index + 1, actions: [
    button(`Move ${name} up`, "up", () => moveSong(index, index - 1), { iconOnly: true, className: "move-up" }),
    button(`Move ${name} down`, "down", () => moveSong(index, index + 1), { iconOnly: true, className: "move-down" }),
    button(`Remove ${name} from the path`, "close", () => removeSong(index), { iconOnly: true, className: "remove" })] });
}

export function showPath() {
  const list = $("path-songs");
  list.replaceChildren(...path.songs.map(songRow));
  if (path.songs.length < 2) {
    list.append(emptyItem(path.songs.length ? "One more song, please." : "No songs yet.",
      "A path needs at least two songs: open a track and press “Add to path” for the start, the end, and any song to pass by."));
  }
  $("path-build").disabled = path.songs.length < 2;
}

/** Show the journey `tracks` (none: nothing to play or export). */
function showJourney(tracks) {
  path.tracks = tracks;
  $("path-list").replaceChildren(...tracks.map((t, i) => trackRow(t, { number: i + 1 })));
  $("path-play").disabled = $("path-export").disabled = !tracks.length;
}

/** The number in `input` as an integer within its min and max (its value when it is not a number). */
function clamped(input) {
  const value = Math.round(input.valueAsNumber), min = Number(input.min), max = Number(input.max);
  input.value = Number.isFinite(value) ? Math.min(max, Math.max(min, value)) : input.defaultValue;
  return Number(input.value);
}

async function buildPath() {
  const length = clamped($("path-length"));
  showJourney([]);
  try {
    showJourney(await post("/api/path", { songs: path.songs.map((t) => t.id), length, drunk: +$("path-drunk").value }));
  } catch (error) { showError($("path-list"), error); }
}

async function exportPath() {
  try {
    const text = await post("/api/playlist.m3u8", { ids: path.tracks.map((t) => t.id) });
    const a = el("a", { href: URL.createObjectURL(new Blob([text], { type: "audio/x-mpegurl" })),
                        download: "soundalike-path.m3u8" });
    a.click();
    URL.revokeObjectURL(a.href);
  } catch (error) { showError($("path-list"), error); }
}

function clearPath() {
  path.songs = [];
  songsChanged();
}

// --- your own song --------------------------------------------------------------------------------
const RECORD_MS = 10_000;

function uploadStatus(text, error = false) {
  $("upload-status").textContent = text;
  $("upload-status").classList.toggle("error", error);
}

async function uploadBlob(blob, name) {
  uploadStatus(`Listening to ${name}…`);
  $("upload-tags").replaceChildren();
  $("upload-results").replaceChildren();
  const form = new FormData();
  form.append("file", blob, name);
  try {
    const result = await api("/api/upload?k=10", { method: "POST", body: form });
    uploadStatus(`Songs like ${result.name}:`);
    chips($("upload-tags"), result.tags, { percent: true });
    $("upload-results").replaceChildren(...result.similar.map((rec) => trackRow(rec, { why: why("your song", rec) })));
    if (!result.similar.length) $("upload-results").append(emptyItem("The library has no track to compare it with yet."));
  } catch (error) { uploadStatus(error.message, true); return; }
  await showUploadPassages(blob, name);
}

async function record() {
  let stream;
  try {
    stream = await navigator.mediaDevices.getUserMedia({ audio: true });
  } catch (error) {
    uploadStatus(`The microphone cannot be used: ${sentence(error.message || error.name)}`, true);
    return;
  }
  const recorder = new MediaRecorder(stream), chunks = [];
  recorder.ondataavailable = (e) => chunks.push(e.data);
  recorder.onstop = () => {
    stream.getTracks().forEach((t) => t.stop());
    uploadBlob(new Blob(chunks, { type: recorder.mimeType }), "your recording");
  };
  uploadStatus("Recording 10 seconds…");
  recorder.start();
  setTimeout(() => recorder.stop(), RECORD_MS);
}

function initDrop(zone) {
  zone.addEventListener("dragover", (e) => { e.preventDefault(); zone.classList.add("drop-target"); });
  zone.addEventListener("dragleave", () => zone.classList.remove("drop-target"));
  zone.addEventListener("drop", (e) => {
    e.preventDefault();
    zone.classList.remove("drop-target");
    const file = e.dataTransfer.files[0];
    if (file) uploadBlob(file, file.name);
  });
}

// --- wiring ---------------------------------------------------------------------------------------
function showValue(input, output) {
  input.addEventListener("input", () => { output.textContent = input.value; });
}

export function initMixes() {
  showValue($("keep-on"), $("keep-on-value"));
  showValue($("drunk"), $("drunk-value"));
  showValue($("path-drunk"), $("path-drunk-value"));
  $("radio-skip").onclick = () => $("next").click();
  $("radio-stop").onclick = stopRadio;
  $("for-you").onclick = startForYou;
  $("radio-profile").textContent = `Your likes and skips are kept under the profile “${profile}” ` +
    "(open the page with ?profile=NAME for another).";
  $("radio-history").replaceChildren(emptyItem("The radio has played nothing yet.",
                                               "The tracks a radio plays are listed here."));
  $("path-length").onchange = () => clamped($("path-length"));
  $("path-build").onclick = buildPath;
  $("path-play").onclick = () => { stopRadio(); playAll(path.tracks); };
  $("path-export").onclick = exportPath;
  $("path-clear").onclick = clearPath;
  $("upload-file").onchange = () => { const file = $("upload-file").files[0]; if (file) uploadBlob(file, file.name); };
  $("record").onclick = record;
  initDrop($("upload-drop"));
}
