// How tracks, albums and artists are shown in lists: rows with their actions, cards, the "why" of a recommendation.

import { current, enqueue, playNext, playNow } from "./player.js";
import { albumName, artistName, button, cover, el, fmtTime, plural, trackCover, trackTitle } from "./ui.js";

export const artistHref = (artist) => `#/artist/${encodeURIComponent(artist || "")}`;
export const albumHref = (artist, album) => `#/album/${encodeURIComponent(artist || "")}/${encodeURIComponent(album || "")}`;

const TOAST_MS = 2500;

/** A short note that fades: "Added … to the queue". */
export function toast(text) {
  document.querySelector(".toast")?.remove();
  const note = el("div", { class: "toast", role: "status" }, text);
  document.body.append(note);
  setTimeout(() => note.remove(), TOAST_MS);
}

/** Links to a track's artist and album (" · " between). */
export function byline(track) {
  return [el("a", { href: artistHref(track.artist) }, artistName(track.artist)),
          track.album ? [" · ", el("a", { href: albumHref(track.artist, track.album) }, track.album)] : null];
}

/** A track in a list: cover with a play button, title and byline, tags, length, and the buttons `actions`
 * (by default play next and add to queue). */
export function trackRow(track, { why = null, number = null, actions = null } = {}) {
  const name = `“${trackTitle(track)}”`;
  return el("li", { class: "track" + (current()?.id === track.id ? " playing" : ""), dataset: { id: track.id } },
    number === null ? null : el("span", { class: "number muted" }, number),
    el("div", { class: "cover-wrap" }, trackCover(track, "tiny"),
       button(`Play ${name}`, "play", () => playNow(track), { iconOnly: true, className: "play" })),
    el("div", { class: "track-text" },
       el("a", { class: "title", href: `#/track/${track.id}` }, trackTitle(track)),
       el("span", { class: "byline muted small" }, byline(track))),
    el("ul", { class: "chips compact", "aria-label": "tags" },
       (track.tags || []).slice(0, 3).map((t) => el("li", { class: "chip" }, t.tag))),
    el("span", { class: "duration muted small" }, track.duration ? fmtTime(track.duration) : ""),
    el("div", { class: "row-actions" }, actions || [
       button(`Play ${name} next`, "play-next", () => { playNext(track); toast(`${name} plays next.`); },
              { iconOnly: true, className: "play-next" }),
       button(`Add ${name} to the queue`, "list-plus", () => { enqueue(track); toast(`Added ${name} to the queue.`); },
              { iconOnly: true, className: "enqueue" })]),
    why);
}

/** Why `rec` sounds like the seed (called `seedName`, e.g. “Low Chord”): the tags both have, and passage pairs. */
export function why(seedName, rec) {
  const shared = rec.shared_tags || [];
  return el("div", { class: "why" },
    shared.length ? el("p", { class: "shared small" }, "Both: ",
                       el("ul", { class: "chips compact inline" }, shared.map((t) => el("li", { class: "chip" }, t)))) : null,
    el("ul", { class: "passages small" }, (rec.passages || []).map((p) => el("li", { class: "passage" },
      el("span", {}, `The ${fmtTime(p.seed_start)} passage of ${seedName} sounds like ${fmtTime(p.track_start)} here.`),
      button(`Play from ${fmtTime(p.track_start)}`, "play", () => playNow(rec, p.track_start),
             { className: "small passage-play" })))));
}

/** An album or artist in a grid: its cover, name and counts; `onplay` plays it. */
export function card({ href, coverId, name, title, sub, round = false, onplay }) {
  return el("li", { class: "card" + (round ? " round" : "") },
    el("a", { href, class: "card-link" }, cover(coverId, name, "large"),
       el("span", { class: "card-title" }, title), el("span", { class: "card-sub muted small" }, sub)),
    onplay ? button(`Play ${title}`, "play", onplay, { iconOnly: true, className: "play card-play" }) : null);
}

export const albumCard = (album, onplay) => card({
  href: albumHref(album.artist, album.album), coverId: album.cover, name: album.album || album.artist,
  title: albumName(album.album), sub: `${artistName(album.artist)} · ${plural(album.tracks, "track")}`, onplay });

export const artistCard = (artist) => card({
  href: artistHref(artist.artist), coverId: artist.cover, name: artistName(artist.artist), round: true,
  title: artistName(artist.artist), sub: `${plural(artist.albums, "album")} · ${plural(artist.tracks, "track")}` });
