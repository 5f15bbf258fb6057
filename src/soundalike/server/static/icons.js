// Inline SVG icons (24x24, drawn with strokes unless SOLID), put into every element with a data-icon attribute.

const PATHS = {
  play: "M7 4v16l13-8z",
  pause: "M6 4h4v16H6zM14 4h4v16h-4z",
  next: "M5 4l10 8-10 8zM17 5h2v14h-2z",
  prev: "M19 20 9 12l10-8zM5 5h2v14H5z",
  list: "M8 6h13M8 12h13M8 18h13M3 6h.01M3 12h.01M3 18h.01",
  "list-plus": "M3 6h12M3 12h12M3 18h8M18 15v6M15 18h6",
  "play-next": "M15 10l5 5-5 5M4 4v7a4 4 0 0 0 4 4h12",
  close: "M18 6 6 18M6 6l12 12",
  heart: "M12 20s-7-4.5-7-10a4 4 0 0 1 7-2.6A4 4 0 0 1 19 10c0 5.5-7 10-7 10z",
  ban: "M5 12a7 7 0 1 0 14 0 7 7 0 1 0-14 0M7 7l10 10",
  up: "M18 15l-6-6-6 6",
  down: "M6 9l6 6 6-6",
  left: "M15 18l-6-6 6-6",
  right: "M9 18l6-6-6-6",
  radio: "M4.9 19.1C1 15.2 1 8.8 4.9 4.9M7.8 16.2a6 6 0 0 1 0-8.5M16.2 7.8a6 6 0 0 1 0 8.5M19.1 4.9c3.9 3.9 3.9 10.3 0 14.2M10 12a2 2 0 1 0 4 0 2 2 0 1 0-4 0",
  sun: "M8 12a4 4 0 1 0 8 0 4 4 0 1 0-8 0M12 2v2M12 20v2M4.9 4.9l1.4 1.4M17.7 17.7l1.4 1.4M2 12h2M20 12h2M4.9 19.1l1.4-1.4M17.7 6.3l1.4-1.4",
  moon: "M21 12.8A9 9 0 1 1 11.2 3a7 7 0 0 0 9.8 9.8z",
  menu: "M3 6h18M3 12h18M3 18h18",
  search: "M4 11a7 7 0 1 0 14 0 7 7 0 1 0-14 0M21 21l-4.4-4.4",
  volume: "M11 5 6 9H2v6h4l5 4zM15.5 8.5a5 5 0 0 1 0 7M19 5a10 10 0 0 1 0 14",
  muted: "M11 5 6 9H2v6h4l5 4zM23 9l-6 6M17 9l6 6",
  music: "M9 18V5l12-2v13M3 18a3 3 0 1 0 6 0 3 3 0 1 0-6 0M15 16a3 3 0 1 0 6 0 3 3 0 1 0-6 0",
  user: "M20 21v-2a4 4 0 0 0-4-4H8a4 4 0 0 0-4 4v2M8 7a4 4 0 1 0 8 0 4 4 0 1 0-8 0",
  disc: "M2 12a10 10 0 1 0 20 0 10 10 0 1 0-20 0M9 12a3 3 0 1 0 6 0 3 3 0 1 0-6 0",
  route: "M3 19a3 3 0 1 0 6 0 3 3 0 1 0-6 0M9 19h8.5a3.5 3.5 0 0 0 0-7h-11a3.5 3.5 0 0 1 0-7H15M15 5a3 3 0 1 0 6 0 3 3 0 1 0-6 0",
  mic: "M9 4a3 3 0 0 1 6 0v8a3 3 0 0 1-6 0zM19 10v2a7 7 0 0 1-14 0v-2M12 19v3",
  upload: "M21 15v4a2 2 0 0 1-2 2H5a2 2 0 0 1-2-2v-4M17 8l-5-5-5 5M12 3v12",
  download: "M21 15v4a2 2 0 0 1-2 2H5a2 2 0 0 1-2-2v-4M7 10l5 5 5-5M12 15V3",
  map: "M1 6v16l7-4 8 4 7-4V2l-7 4-8-4zM8 2v16M16 6v16",
  signout: "M9 21H5a2 2 0 0 1-2-2V5a2 2 0 0 1 2-2h4M16 17l5-5-5-5M21 12H9",
};
const SOLID = new Set(["play", "pause", "next", "prev"]);
const SVG = "http://www.w3.org/2000/svg";

/** An <svg> element of the named icon, decorative (the button around it carries the label). */
export function icon(name) {
  const svg = document.createElementNS(SVG, "svg");
  svg.setAttribute("viewBox", "0 0 24 24");
  svg.setAttribute("aria-hidden", "true");
  svg.setAttribute("class", SOLID.has(name) ? "icon solid" : "icon");
  const path = document.createElementNS(SVG, "path");
  path.setAttribute("d", PATHS[name]);
  svg.append(path);
  return svg;
}

/** Give `element` the icon `name` in place of the one it has (its first child, when an icon). */
export function setIcon(element, name) {
  element.dataset.icon = name;
  const old = element.querySelector(":scope > svg.icon");
  if (old) old.replaceWith(icon(name)); else element.prepend(icon(name));
}

/** Draw the icon of every element under `root` that names one in data-icon. */
export function drawIcons(root = document) {
  for (const element of root.querySelectorAll("[data-icon]")) setIcon(element, element.dataset.icon);
}
