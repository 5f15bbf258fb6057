// Sonic families: the library in groups of tracks that sound alike, named by their most typical tags.

import { api, query } from "./api.js";
import { showFamilyOnMap } from "./map.js";
import { enqueue, playAll } from "./player.js";
import { toast, trackRow } from "./rows.js";
import { $, button, el, emptyItem, plural, showError } from "./ui.js";

const PLAYED_AT_MOST = 1000; // tracks of a family that "Play" and "Add to queue" take, most typical first

let shown = null; // the count the list shows ("" automatic), so that a visit does not ask again

/** The number of families the page asks for: "" (chosen by the server) or a count. */
export const familyCount = () => $("families-n").value;

/** The query of a families request: the chosen count (none: automatic) and `more` parameters. */
export const countQuery = (more = {}) => `?${query({ n: familyCount(), ...more })}`;

export async function showFamilies() {
  if (shown === familyCount()) return;
  const list = $("families-list");
  $("families-status").textContent = "Grouping the library…";
  list.replaceChildren();
  try {
    const answer = await api(`/api/families${countQuery()}`);
    shown = familyCount();
    const how = answer.automatic ? "as many as the music asks for (by silhouette)" : "as many as asked";
    const count = answer.families.length;
    $("families-status").textContent = `${count} ${count === 1 ? "family" : "families"}: ${how}.`;
    list.replaceChildren(...answer.families.map(familyItem));
    if (!answer.families.length) {
      list.append(emptyItem("The library is empty.", "Index some music first: soundalike index ~/Music"));
    }
  } catch (error) {
    $("families-status").textContent = "";
    showError(list, error);
  }
}

/** The library changed, or the count did: read the families again when next shown. */
export function forgetFamilies() {
  shown = null;
}

async function familyTracks(family) {
  return api(`/api/families/${family.number}/tracks${countQuery({ limit: PLAYED_AT_MOST })}`);
}

async function exportFamily(family, where) {
  try {
    const text = await api(`/api/families/${family.number}/playlist.m3u8${countQuery()}`);
    const a = el("a", { href: URL.createObjectURL(new Blob([text], { type: "audio/x-mpegurl" })),
                        download: `soundalike-family-${family.number}.m3u8` });
    a.click();
    URL.revokeObjectURL(a.href);
  } catch (error) { showError(where, error); }
}

function familyItem(family) {
  const examples = el("ol", { class: "tracks" }, family.examples.map((t) => trackRow(t)));
  const act = (label, icon, action, className) => button(label, icon, async () => {
    try { await action(); } catch (error) { showError(examples, error); }
  }, { className });
  return el("li", { class: "family panel", dataset: { number: family.number } },
    el("div", { class: "section-head" },
       el("h2", {}, family.name),
       el("span", { class: "muted small family-size" }, plural(family.size, "track"))),
    el("div", { class: "actions" },
       act("Play", "play", async () => playAll(await familyTracks(family)), "family-play"),
       act("Add to queue", "list-plus", async () => {
         const tracks = await familyTracks(family);
         enqueue(...tracks);
         toast(`Added ${plural(tracks.length, "track")} of “${family.name}” to the queue.`);
       }, "family-enqueue"),
       act("Export M3U", "download", () => exportFamily(family, examples), "family-export"),
       act("Show on the map", "map", () => showFamilyOnMap(family.number - 1), "family-map")),
    el("h3", { class: "muted small" }, "Most typical"),
    examples);
}

export function initFamilies() {
  $("families-n").onchange = () => { forgetFamilies(); showFamilies(); };
}
