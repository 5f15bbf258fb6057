"""Playlist files: extended M3U8 and XSPF, written and read back.

M3U8: UTF-8, ``#EXTM3U`` then ``#EXTINF:<seconds>,<artist> - <title>`` before each
path (seconds -1 when unknown). XSPF (https://xspf.org/spec, version 1): each
``<location>`` is a URI, ``file://`` for absolute paths or a relative reference
resolved against the playlist's folder; durations in milliseconds.
"""

from __future__ import annotations

import dataclasses
import os
import urllib.parse
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import Path

from .errors import ParameterError

XSPF_NS = "http://xspf.org/ns/0/"


@dataclasses.dataclass(frozen=True)
class Entry:
    """One playlist item: an absolute path and what a player shows."""

    path: str
    artist: str | None = None
    title: str | None = None
    album: str | None = None
    duration: float | None = None  # seconds


def _location(path: str, playlist: Path, relative: bool) -> str:
    if relative:
        return os.path.relpath(path, playlist.resolve().parent)
    return str(Path(path).resolve())


def m3u_text(entries: Sequence[Entry], out: str | os.PathLike, *, relative: bool = False) -> str:
    """Extended M3U for a playlist file at ``out`` (relative paths are against its folder)."""
    lines = ["#EXTM3U"]
    for e in entries:
        seconds = round(e.duration) if e.duration is not None else -1
        label = " - ".join(x for x in (e.artist, e.title) if x) or Path(e.path).stem
        lines += [f"#EXTINF:{seconds},{label}", _location(e.path, Path(out), relative)]
    return "\n".join(lines) + "\n"


def write_m3u(entries: Sequence[Entry], out: str | os.PathLike, *, relative: bool = False) -> None:
    Path(out).write_text(m3u_text(entries, out, relative=relative), encoding="utf-8")


def read_m3u(path: str | os.PathLike) -> list[Entry]:
    """Entries of an (extended) M3U/M3U8 file; relative paths resolved against its folder."""
    path = Path(path)
    entries, info = [], None
    for line in path.read_text(encoding="utf-8-sig").splitlines():
        line = line.strip()
        if line.startswith("#EXTINF:"):
            seconds, _, label = line[len("#EXTINF:"):].partition(",")
            artist, sep, title = label.partition(" - ")
            duration = float(seconds) if seconds.strip() not in ("", "-1") else None
            info = (artist or None, title or None) if sep else (None, label or None)
            info = (*info, duration)
        elif line and not line.startswith("#"):
            location = (path.parent / line).resolve() if not os.path.isabs(line) else Path(line)
            artist, title, duration = info or (None, None, None)
            entries.append(Entry(str(location), artist, title, None, duration))
            info = None
    return entries


def write_xspf(entries: Sequence[Entry], out: str | os.PathLike, *, relative: bool = False,
               title: str | None = None) -> None:
    out = Path(out)
    ET.register_namespace("", XSPF_NS)
    playlist = ET.Element(f"{{{XSPF_NS}}}playlist", version="1")
    if title:
        ET.SubElement(playlist, f"{{{XSPF_NS}}}title").text = title
    track_list = ET.SubElement(playlist, f"{{{XSPF_NS}}}trackList")
    for e in entries:
        track = ET.SubElement(track_list, f"{{{XSPF_NS}}}track")
        location = _location(e.path, out, relative)
        uri = urllib.parse.quote(Path(location).as_posix()) if relative else Path(location).as_uri()
        ET.SubElement(track, f"{{{XSPF_NS}}}location").text = uri
        for tag, value in (("title", e.title), ("creator", e.artist), ("album", e.album)):
            if value:
                ET.SubElement(track, f"{{{XSPF_NS}}}{tag}").text = value
        if e.duration is not None:
            ET.SubElement(track, f"{{{XSPF_NS}}}duration").text = str(round(e.duration * 1000))
    ET.indent(playlist)
    ET.ElementTree(playlist).write(out, encoding="UTF-8", xml_declaration=True)


def read_xspf(path: str | os.PathLike) -> list[Entry]:
    path = Path(path)
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as exc:
        raise ParameterError(f"{path}: not an XSPF playlist ({exc})") from None
    ns = {"x": XSPF_NS}
    entries = []
    for track in root.findall("x:trackList/x:track", ns):
        uri = track.findtext("x:location", default="", namespaces=ns)
        parsed = urllib.parse.urlparse(uri)
        if parsed.scheme == "file":
            location = Path(urllib.parse.unquote(parsed.path))
        else:
            location = (path.parent / urllib.parse.unquote(uri)).resolve()
        ms = track.findtext("x:duration", namespaces=ns)
        entries.append(Entry(str(location), track.findtext("x:creator", namespaces=ns),
                             track.findtext("x:title", namespaces=ns), track.findtext("x:album", namespaces=ns),
                             int(ms) / 1000 if ms else None))
    return entries
