// The library's views: search and tag filter, artists, albums, an artist, an album, a track and what sounds like it.

import { api, query } from "./api.js";
import { showSpectrogram } from "./passages.js";
import { enqueue, playAll, playNext, playNow } from "./player.js";
import { albumCard, artistCard, artistHref, byline, toast, trackRow, why } from "./rows.js";
import { $, albumName, artistName, chips, el, emptyItem, endless, fmtLength, fmtTime, plural, showError,
         trackCover, trackTitle } from "./ui.js";

const INDEX_FIRST = "Index some music first: `soundalike index ~/Music`, then reload this page.";
const ALL = 1000; // most tracks fetched at once to play an album or artist
const SEARCH_DELAY = 250; // ms after the last key before searching

const tracksPage = (params) => (offset, limit) => api("/api/tracks?" + query({ ...params, offset, limit }));

// --- library: search and tag filter -------------------------------------------------------------------
let shownSearch = null; // the parameters of the list on screen

function searchParams() {
  const tag = $("search-tag").value;
  return { q: $("search-input").value.trim(), tag, min_prob: tag ? $("search-min-prob").value : "" };
}

export function showLibrary({ force = false } = {}) {
  const params = searchParams(), key = JSON.stringify(params);
  if (key === shownSearch && !force) return;
  shownSearch = key;
  const filtered = params.q || params.tag;
  $("search-min-prob").disabled = !params.tag;
  endless($("search-results"), {
    fetchPage: tracksPage(params),
    render: (track) => trackRow(track),
    empty: () => filtered
      ? emptyItem("No tracks match.", params.tag ? "Try fewer words, or a lower “likely” threshold." : "Try fewer or other words.")
      : emptyItem("The library is empty.", INDEX_FIRST),
    count: (n) => filtered ? `${plural(n, "track")} found.` : `All ${plural(n, "track")} of the library.`,
  });
}

export function initLibrary(tags) {
  for (const select of [$("search-tag"), $("similar-tag")]) {
    select.append(...tags.map((tag) => el("option", { value: tag }, tag)));
  }
  let timer = null;
  $("search-form").onsubmit = (e) => { e.preventDefault(); clearTimeout(timer); showLibrary(); };
  $("search-input").oninput = () => { clearTimeout(timer); timer = setTimeout(showLibrary, SEARCH_DELAY); };
  $("search-tag").onchange = $("search-min-prob").onchange = () => showLibrary();
  $("similar-tag").onchange = () => showSimilar(shownTrack);
}

// --- artists and albums ---------------------------------------------------------------------------
let browsed = { artists: false, albums: false };

export function showArtists() {
  if (browsed.artists) return;
  browsed.artists = true;
  endless($("artist-grid"), {
    fetchPage: (offset, limit) => api("/api/artists?" + query({ offset, limit })),
    render: artistCard,
    empty: () => emptyItem("No artists yet.", INDEX_FIRST),
  });
}

const playAlbum = (album) => async () => playAll(await albumTracks(album.artist, album.album));

export function showAlbums() {
  if (browsed.albums) return;
  browsed.albums = true;
  endless($("album-grid"), {
    fetchPage: (offset, limit) => api("/api/albums?" + query({ offset, limit })),
    render: (album) => albumCard(album, playAlbum(album)),
    empty: () => emptyItem("No albums yet.", INDEX_FIRST),
  });
}

/** The artist and album lists are read again when next shown (the library may have changed). */
export function forgetBrowsing() {
  browsed = { artists: false, albums: false };
}

// an artist or album "" is the tracks without one (the server matches artist and album exactly)
const albumTracks = (artist, album) => api("/api/tracks?" + query({ artist, album, limit: ALL }));
const artistTracks = (artist) => api("/api/tracks?" + query({ artist, limit: ALL }));

export async function showArtist(artist = "") {
  $("artist-name").textContent = artistName(artist);
  $("artist-meta").textContent = "";
  $("artist-albums").replaceChildren();
  $("artist-play").onclick = async () => playAll(await artistTracks(artist));
  $("artist-enqueue").onclick = async () => {
    enqueue(...await artistTracks(artist));
    toast(`Added the tracks of ${artistName(artist)} to the queue.`);
  };
  endless($("artist-tracks"), { fetchPage: tracksPage({ artist }), render: (t) => trackRow(t),
                                empty: () => emptyItem("No tracks of this artist.") });
  try {
    const albums = (await api("/api/albums?" + query({ artist, limit: ALL }))).filter((a) => a.album);
    $("artist-albums").replaceChildren(...albums.map((a) => albumCard(a, playAlbum(a))));
    if (!albums.length) $("artist-albums").append(emptyItem("No albums: these tracks have no album tag."));
    const tracks = albums.reduce((n, a) => n + a.tracks, 0);
    $("artist-meta").textContent = albums.length ? `${plural(albums.length, "album")} · ${plural(tracks, "track")} on albums` : "";
  } catch (error) { showError($("artist-albums"), error); }
}

export async function showAlbum(artist = "", album = "") {
  $("album-title").textContent = albumName(album);
  $("album-meta").replaceChildren(el("a", { href: artistHref(artist) }, artistName(artist)));
  $("album-cover").replaceChildren();
  $("album-play").onclick = $("album-enqueue").onclick = null;
  $("album-tracks").replaceChildren(el("li", { class: "loading-more muted" }, el("span", { class: "spinner" }), "Loading…"));
  try {
    const tracks = await albumTracks(artist, album);
    if (tracks.length) $("album-cover").replaceChildren(trackCover(tracks[0], "hero-art"));
    const seconds = tracks.reduce((s, t) => s + (t.duration || 0), 0);
    $("album-meta").append(` · ${plural(tracks.length, "track")} · ${fmtLength(seconds)}`);
    $("album-tracks").replaceChildren(...tracks.map((t, i) => trackRow(t, { number: i + 1 })));
    if (!tracks.length) $("album-tracks").append(emptyItem("This album has no tracks in the library any more."));
    $("album-play").onclick = () => playAll(tracks);
    $("album-enqueue").onclick = () => { enqueue(...tracks); toast(`Added “${albumName(album)}” to the queue.`); };
  } catch (error) { showError($("album-tracks"), error); }
}

// --- a track --------------------------------------------------------------------------------------
let shownTrack = null;

// "124 BPM", "A minor (8A)", "-9.3 LUFS", "energy 0.72": what was measured of a track (none for a track
// indexed before these were)
function musicalFacts(m) {
  if (!m) return [];
  return [m.bpm != null ? `${Math.round(m.bpm)} BPM` : null,
    m.key ? `${m.key} (${m.camelot})` : null,
    m.loudness != null ? `${m.loudness.toFixed(1)} LUFS` : null,
    m.energy != null ? `energy ${m.energy.toFixed(2)}` : null].filter(Boolean);
}

export async function showTrack(id, { onRadio, onPath }) {
  const track = await api(`/api/tracks/${id}`);
  shownTrack = track;
  $("track-title").textContent = trackTitle(track);
  $("track-meta").replaceChildren(...byline(track).flat(Infinity).filter(Boolean),
    ...[track.genre, track.duration ? fmtTime(track.duration) : null].filter(Boolean).map((s) => ` · ${s}`),
    ...musicalFacts(track.musical).map((s) => ` · ${s}`),
    el("span", { class: "path small", title: track.path }, track.path));
  $("track-cover").replaceChildren(trackCover(track, "hero-art"));
  chips($("track-tags"), track.tags, { percent: true });
  showSpectrogram(track);
  $("track-play").onclick = () => playNow(track);
  $("track-next").onclick = () => { playNext(track); toast(`“${trackTitle(track)}” plays next.`); };
  $("track-enqueue").onclick = () => { enqueue(track); toast(`Added “${trackTitle(track)}” to the queue.`); };
  $("track-radio").onclick = () => onRadio(track);
  $("track-add-path").onclick = () => onPath(track);
  await showSimilar(track);
}

async function showSimilar(track) {
  const list = $("similar-list"), tag = $("similar-tag").value;
  list.replaceChildren(el("li", { class: "loading-more muted" }, el("span", { class: "spinner" }), "Listening for look-alikes…"));
  try {
    const recs = await api(`/api/tracks/${track.id}/similar?` + query({ k: 10, tag }));
    if (shownTrack !== track) return;
    list.replaceChildren(...recs.map((rec) => trackRow(rec, { why: why(`“${trackTitle(track)}”`, rec) })));
    if (!recs.length) {
      list.append(tag ? emptyItem(`No similar track is tagged “${tag}”.`, "Choose another tag, or any tag.")
                      : emptyItem("No other track in the library yet.", INDEX_FIRST));
    }
  } catch (error) { showError(list, error); }
}
