// Talking to the server: every failure becomes an Error whose message is a sentence for people.

export const NO_ANSWER = "The server did not answer; is soundalike serve still running?";
export const SIGNED_OUT = "You are not signed in (or the server was restarted with another token): reload the page to sign in.";

/** Whatever `path` answers (JSON, text or null); throws Error(sentence) on a failure. */
export async function api(path, options = {}) {
  let response;
  try {
    response = await fetch(path, { credentials: "same-origin", ...options });
  } catch (error) {
    if (error.name === "AbortError") throw error;
    throw new Error(NO_ANSWER);
  }
  if (!response.ok) throw Object.assign(new Error(await failure(response)), { status: response.status });
  if (response.status === 204) return null;
  const type = response.headers.get("content-type") || "";
  return type.includes("json") ? response.json() : response.text();
}

/** POST a JSON body. */
export const post = (path, body) =>
  api(path, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });

/** The sentence that explains a failed response: the server's detail when it gave one. */
export async function failure(response) {
  if (response.status === 401) return SIGNED_OUT;
  let detail = null;
  try { detail = (await response.json()).detail; } catch { /* not JSON */ }
  if (typeof detail === "string" && detail) return sentence(detail);
  if (Array.isArray(detail)) return sentence(detail.map((d) => d.msg || String(d)).join("; "));
  if (response.status >= 500) return `The server failed (${response.status} ${response.statusText}); its log says why.`;
  return `The server refused the request (${response.status} ${response.statusText}).`;
}

/** `text` with a capital first letter and a full stop. */
export function sentence(text) {
  const t = text.trim();
  return t.charAt(0).toUpperCase() + t.slice(1) + (/[.!?…]$/.test(t) ? "" : ".");
}

/** Why a track's audio cannot be played, asked of the server (its detail), or the browser's `fallback`. */
export async function audioProblem(id, fallback) {
  try {
    const response = await fetch(urls.audio(id), { headers: { Range: "bytes=0-0" } });
    if (!response.ok) return await failure(response);
  } catch {
    return NO_ANSWER;
  }
  return fallback;
}

const EXACT_NAMES = ["artist", "album"]; // sent even when empty: "" matches the tracks without one

const FETCHES_AT_ONCE = 6; // requests in flight while reading tracks one by one

/** The tracks of `ids` the library has, as a Map id -> track (ids it does not know are left out). */
export async function tracksById(ids) {
  const wanted = [...new Set(ids)], known = new Map();
  const fetchSome = async () => {
    for (let id = wanted.pop(); id !== undefined; id = wanted.pop()) {
      try {
        known.set(id, await api(`/api/tracks/${id}`));
      } catch (error) {
        if (error.status !== 404) throw error;
      }
    }
  };
  await Promise.all(Array.from({ length: FETCHES_AT_ONCE }, fetchSome));
  return known;
}

/** Query parameters without the undefined, null and empty ones (but an empty artist or album is sent). */
export function query(params) {
  const search = new URLSearchParams();
  for (const [key, value] of Object.entries(params)) {
    if (value === undefined || value === null || (value === "" && !EXACT_NAMES.includes(key))) continue;
    search.set(key, value);
  }
  return search.toString();
}

export const urls = {
  audio: (id) => `/api/tracks/${id}/audio`,
  cover: (id) => `/api/tracks/${id}/cover`,
  spectrogram: (id, start = 0) => `/api/tracks/${id}/spectrogram.png` + (start ? `?start=${start.toFixed(2)}` : ""),
};
