// Listening feedback: what the listener plays through, skips, likes and dislikes, sent under a profile.

import { post } from "./api.js";

const PROFILE_KEY = "soundalike.profile"; // localStorage: the profile given by an earlier address

/** Whose listening this page reports: ?profile=NAME in the address (kept for later visits), else the one
 * kept, else "default". */
export const profile = (() => {
  const given = new URLSearchParams(location.search).get("profile");
  if (given) localStorage.setItem(PROFILE_KEY, given);
  return given || localStorage.getItem(PROFILE_KEY) || "default";
})();

/** The listener left `track` at `seconds` (`ended`: it played to its end); the server tells a skip from a play. */
export function listened(track, seconds, ended) {
  post("/api/listened", { track: track.id, seconds, ended, profile, source: "page" })
    .catch((error) => console.warn(`soundalike: the listening of “${track.id}” was not stored: ${error.message}`));
}

/** Store a like or dislike of `track`; throws Error(sentence) when the server refuses. */
export const feel = (track, kind) => post("/api/feedback", { track: track.id, kind, profile, source: "page" });
