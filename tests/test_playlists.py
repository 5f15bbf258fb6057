"""Radio and paths over a catalogue of controlled vectors, and playlist files."""

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from soundalike import ParameterError, musical
from soundalike.audio import TrackMetadata
from soundalike.cli import main
from soundalike.library import Library
from soundalike.library.catalogue import ModelDescription, TrackRecord
from soundalike.playlist_files import Entry, read_m3u, read_xspf, write_m3u, write_xspf
from soundalike.playlists import RadioSettings, naive_path, next_track, path, radio, step_distances

DIM = 8


def add(lib, name, vector, artist, duration=200.0, measures=None):
    vector = np.asarray(vector, np.float32)
    record = TrackRecord(path=f"/music/{name}.mp3", size=1, mtime_ns=1,
                         metadata=TrackMetadata(artist, name, "Album", None, duration), excerpt=0,
                         vector=vector, tags=np.full(3, 0.5, np.float32), patches=vector[None, :],
                         starts=np.zeros(1, np.float32), musical=measures)
    return lib.catalogue.put(record)


@pytest.fixture
def ring(tmp_path):
    """40 tracks on a circle in the plane of dims 0-1 (angle = index x 9 degrees),
    8 artists in turn, lengths 3 s apart, plus a duplicate of track 0 (same vector and length)."""
    lib = Library(tmp_path / "ring.sqlite", create=True)
    lib.catalogue.bind_model(ModelDescription("test", ("a", "b", "c"), (DIM,), (1.0,)))
    rng = np.random.default_rng(0)
    for i in range(40):
        angle = np.deg2rad(9 * i)
        v = np.zeros(DIM)
        v[0], v[1] = np.cos(angle), np.sin(angle)
        v[2:] = 0.01 * rng.standard_normal(DIM - 2)
        add(lib, f"t{i:02d}", v, f"artist{i % 8}", duration=180 + 3 * i)
    add(lib, "t00-copy", lib.vectors([1])[0] * 1.0001, "artist0", duration=180.5)
    yield lib
    lib.close()


def angle_of(lib, track):
    v = lib.vectors([track.id])[0]
    return np.rad2deg(np.arctan2(v[1], v[0])) % 360


def seeds(lib, *names):
    return [lib.resolve(f"/music/{n}.mp3") for n in names]


# --- radio -----------------------------------------------------------------------------

def test_sober_radio_walks_to_the_nearest_unplayed_track(ring):
    settings = RadioSettings(keep_on=1, artist_gap=0)
    tracks = list(radio(ring, seeds(ring, "t10"), settings, length=6))
    names = [t.title for t in tracks]
    assert names[0] in ("t09", "t11")
    assert len(set(names)) == 6 and "t10" not in names
    # keep_on=1 steers by the last track only: each step goes to a ring neighbour of the last
    angles = [9 * 10] + [angle_of(ring, t) for t in tracks]
    steps = np.abs((np.diff(angles) + 180) % 360 - 180)
    assert np.all(steps <= 18.5)


def test_radio_is_deterministic_and_stateless(ring):
    settings = RadioSettings(keep_on=3)
    seed = seeds(ring, "t05")
    first = [t.id for t in radio(ring, seed, settings, length=8)]
    assert first == [t.id for t in radio(ring, seed, settings, length=8)]
    history = []
    for _ in range(8):  # one at a time, as the web page asks
        history.append(next_track(ring, seed, history, settings).id)
    assert history == first


def test_radio_artist_gap_and_no_repeats(ring):
    tracks = list(radio(ring, seeds(ring, "t20"), RadioSettings(keep_on=2, artist_gap=4), length=30))
    assert len({t.id for t in tracks}) == 30
    artists = ["artist4"] + [t.artist for t in tracks]  # the seed's artist counts too
    for i in range(len(artists)):
        assert artists[i] not in artists[i + 1 : i + 5]


def test_radio_skips_duplicates_of_what_played(ring):
    tracks = [t.title for t in radio(ring, seeds(ring, "t01"), RadioSettings(artist_gap=0), length=39)]
    assert ("t00" in tracks) != ("t00-copy" in tracks)  # one recording, played once


def test_radio_stops_when_the_library_runs_dry(ring):
    assert len(list(radio(ring, seeds(ring, "t01"), RadioSettings(artist_gap=0), length=100))) == 39


def test_several_seeds_steer_together(ring):
    # t00 and t20 are opposite; their mean points nowhere on the ring, but t10 and t30
    # are equally far from it; with t00 and t04, the next is around t02
    tracks = list(radio(ring, seeds(ring, "t00", "t04"), RadioSettings(artist_gap=0), length=1))
    assert tracks[0].title == "t02"


def test_drunk_radio_is_reproducible_with_a_seed_and_varies_without(ring):
    seed = seeds(ring, "t10")
    drunk = [[t.id for t in radio(ring, seed, RadioSettings(drunk=1.0, random_seed=s), length=10)] for s in (1, 1, 2)]
    assert drunk[0] == drunk[1] != drunk[2]
    sober = [t.id for t in radio(ring, seed, RadioSettings(), length=10)]
    assert sober != drunk[0]


@pytest.mark.parametrize("kwargs,message", [({"keep_on": 0}, "keep_on must be >= 1, got 0"),
                                             ({"drunk": 1.5}, r"drunk must be in \[0, 1\], got 1.5"),
                                             ({"artist_gap": -1}, "artist_gap must be >= 0, got -1")])
def test_radio_settings_are_checked(kwargs, message):
    with pytest.raises(ParameterError, match=message):
        RadioSettings(**kwargs)


# --- paths -----------------------------------------------------------------------------

def test_path_moves_in_even_steps_from_start_to_end(ring):
    tracks = path(ring, seeds(ring, "t00", "t18"), length=10)
    assert [tracks[0].title, tracks[-1].title] == ["t00", "t18"]
    angles = [angle_of(ring, t) for t in tracks]
    assert np.all(np.diff(angles) > 0), angles  # always onwards
    steps = step_distances(ring, tracks)
    assert steps.max() <= 1.6 * steps.mean()
    assert len({t.id for t in tracks}) == 10


def test_path_passes_waypoints_in_order(ring):
    tracks = path(ring, seeds(ring, "t00", "t10", "t05"), length=12)
    titles = [t.title for t in tracks]
    assert titles[0] == "t00" and titles[-1] == "t05"
    assert titles.index("t10") > 0 and len(set(titles)) == 12
    assert "t00-copy" not in titles


def test_path_caps_artists(ring):
    tracks = path(ring, seeds(ring, "t00", "t16"), length=14, max_per_artist=2)  # 8 artists
    counts = {}
    for t in tracks:
        counts[t.artist] = counts.get(t.artist, 0) + 1
    assert max(counts.values()) <= 2


def test_drunk_paths_differ_by_seed_and_repeat_with_one(ring):
    ends = seeds(ring, "t00", "t18")
    a = [t.id for t in path(ring, ends, length=12, drunk=1.0, random_seed=3)]
    b = [t.id for t in path(ring, ends, length=12, drunk=1.0, random_seed=3)]
    c = [t.id for t in path(ring, ends, length=12, drunk=1.0, random_seed=4)]
    sober = [t.id for t in path(ring, ends, length=12)]
    assert a == b and a != c and sober not in (a, c)


def test_path_beats_the_naive_method_where_tracks_clump(tmp_path):
    """Tracks crowd near the start: the naive method, taking the nearest unused track
    to each point of the line, runs out of tracks near the end and steps back, then
    jumps; the path spreads its steps. (Each track has a mirror image opposite, far
    from every path here, so that the library's mean, the centre of its space, is 0.)"""
    lib = Library(tmp_path / "clump.sqlite", create=True)
    lib.catalogue.bind_model(ModelDescription("test", ("a", "b", "c"), (DIM,), (1.0,)))
    angles = [*range(0, 21, 2), 45, 90]
    for i, angle in enumerate(angles):
        v = np.zeros(DIM)
        v[0], v[1] = np.cos(np.deg2rad(angle)), np.sin(np.deg2rad(angle))
        add(lib, f"c{i:02d}", v, f"a{i}", duration=100 + 5 * i)
        add(lib, f"mirror{i:02d}", -v, f"m{i}", duration=300 + 5 * i)
    ends = [lib.resolve("/music/c00.mp3"), lib.resolve(f"/music/c{len(angles) - 1:02d}.mp3")]
    ours = step_distances(lib, path(lib, ends, length=5))
    naive = step_distances(lib, naive_path(lib, ends, length=5))
    assert ours.max() < 0.8 * naive.max()
    lib.close()


@pytest.mark.parametrize("names,length,message", [(("t00",), 5, "a path needs at least 2 songs, got 1"),
                                                   (("t00", "t05", "t09"), 2, "length must be at least the number of songs"),
                                                   (("t00", "t00"), 5, "a waypoint appears twice")])
def test_path_errors(ring, names, length, message):
    with pytest.raises(ParameterError, match=message):
        path(ring, seeds(ring, *names), length=length)


# --- playlist files --------------------------------------------------------------------

ENTRIES = [Entry("/music/Ünïcode & co/one.mp3", "Añá", "First, Song", "LP", 181.4),
           Entry("/music/two.flac", None, "Second", None, None),
           Entry("/elsewhere/three.ogg", "C", "Third - Part", None, 60.0)]


@pytest.mark.parametrize("relative", [False, True])
def test_m3u_round_trip(tmp_path, relative):
    out = tmp_path / "list.m3u8"
    write_m3u(ENTRIES, out, relative=relative)
    text = out.read_text(encoding="utf-8")
    assert text.startswith("#EXTM3U\n#EXTINF:181,Añá - First, Song\n")
    assert ("../" in text) == relative
    back = read_m3u(out)
    assert [e.path for e in back] == [str(Path(e.path).resolve()) for e in ENTRIES]
    assert [(e.artist, e.title) for e in back] == [("Añá", "First, Song"), (None, "Second"), ("C", "Third - Part")]
    assert [e.duration for e in back] == [181, None, 60]


@pytest.mark.parametrize("relative", [False, True])
def test_xspf_round_trip(tmp_path, relative):
    out = tmp_path / "list.xspf"
    write_xspf(ENTRIES, out, relative=relative, title="Journey")
    import xml.etree.ElementTree as ET

    root = ET.parse(out).getroot()
    assert root.tag == "{http://xspf.org/ns/0/}playlist" and root.get("version") == "1"
    locations = [el.text for el in root.iter("{http://xspf.org/ns/0/}location")]
    encoded = "music/%C3%9Cn%C3%AFcode%20%26%20co/one.mp3"  # UTF-8, percent-encoded (RFC 3986)
    up = "../" * len(tmp_path.resolve().parts[1:])  # from the playlist's folder to /
    assert locations[0] == (up + encoded if relative else "file:///" + encoded)
    durations = [el.text for el in root.iter("{http://xspf.org/ns/0/}duration")]
    assert durations == ["181400", "60000"]  # whole milliseconds; unknown ones left out
    back = read_xspf(out)
    assert [e.path for e in back] == [str(Path(e.path).resolve()) for e in ENTRIES]
    assert back[0] == Entry(str(Path(ENTRIES[0].path)), "Añá", "First, Song", "LP", 181.4)
    assert back[1].duration is None and back[1].artist is None


# --- command line ----------------------------------------------------------------------

def test_radio_and_path_commands(ring, tmp_path, capsys):
    library = str(ring.path)
    capsys.readouterr()
    assert main(["radio", "/music/t03.mp3", "--library", library, "--length", "4", "--json"]) == 0
    by_path = json.loads(capsys.readouterr().out)
    assert main(["radio", "t03", "--library", library, "--length", "4", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out == by_path and len(out) == 4 and {"id", "path", "artist", "title"} <= set(out[0])
    assert "t03" not in [t["title"] for t in out]
    m3u = tmp_path / "r.m3u8"
    assert main(["path", "t00", "t09", "--library", library, "--length", "6", "--m3u", str(m3u)]) == 0
    titles = [e.title for e in read_m3u(m3u)]
    assert titles[0] == "t00" and titles[-1] == "t09" and len(titles) == 6
    xspf = tmp_path / "p.xspf"
    assert main(["path", "t00", "t09", "--library", library, "--length", "6", "--xspf", str(xspf)]) == 0
    assert [e.title for e in read_xspf(xspf)] == titles


# --- DJ rules from a seed outside the library -------------------------------------------
@pytest.fixture
def keyed(tmp_path):
    """24 tracks on a circle (track i at 15 i degrees) keyed around the Camelot wheel (hour
    i % 12 + 1, minor), 120 BPM, lengths apart (no two are copies)."""
    lib = Library(tmp_path / "keys.sqlite", create=True)
    lib.catalogue.bind_model(ModelDescription("test", ("a", "b", "c"), (DIM,), (1.0,)))
    for i in range(24):
        v = np.zeros(DIM)
        v[0], v[1] = np.cos(np.deg2rad(15 * i)), np.sin(np.deg2rad(15 * i))
        key = musical.parse_key(f"{i % 12 + 1}A")
        add(lib, f"k{i:02d}", v, f"artist{i}", duration=150 + 7 * i,
            measures=musical.Musical(120.0, 0.9, *key, 0.9, -10.0, 0.5))
    yield lib
    lib.close()


def test_harmonic_rules_start_from_an_outside_seed_by_its_measures(keyed):
    """A seed file in A minor (8A) beside k00 starts the radio on a compatible key."""
    lib = keyed
    inside = lib.resolve("/music/k00.mp3")
    outside = dataclasses.replace(inside, entry=dataclasses.replace(inside.entry, id=None, path="/elsewhere.mp3"),
                                  measures=musical.Musical(120.0, 0.9, 9, 0, 0.9, -10.0, 0.5))  # A minor, 8A
    harmonic = musical.Transitions(harmonic=True)
    free = next(radio(lib, [outside], RadioSettings(), length=1))
    assert free.title in ("k01", "k23")  # the nearest (2A, 12A): no rule
    first = next(radio(lib, [outside], RadioSettings(), length=1, transitions=harmonic))
    assert musical.compatible((9, 0), _key(lib, first)) and first.title == "k20"  # 9A, 60 degrees: the nearest that mixes
    journey = path(lib, [outside, lib.resolve("/music/k21.mp3")], length=4, transitions=harmonic)  # 8A to 10A
    assert musical.compatible((9, 0), _key(lib, journey[1]))
    unmeasured = dataclasses.replace(outside, measures=None)  # nothing to keep: the nearest again
    assert next(radio(lib, [unmeasured], RadioSettings(), length=1, transitions=harmonic)).title in ("k01", "k23")


def _key(lib, track):
    measured = lib.catalogue.musical([track.id])[track.id]
    return measured.key, measured.mode


def test_playlists_show_tempo_and_key_and_say_when_rules_leave_too_few(keyed, capsys):
    lib = ["--library", str(keyed.path)]
    keyed.close()
    assert main(["radio", "/music/k00.mp3", "--length", "2", "--json", *lib]) == 0
    played = json.loads(capsys.readouterr().out)
    assert [t["musical"]["camelot"] for t in played] == [f"{int(t['title'][1:]) % 12 + 1}A" for t in played]
    assert main(["radio", "/music/k00.mp3", "--length", "1", *lib]) == 0
    shown = capsys.readouterr().out
    assert "120 BPM  2A" in shown or "120 BPM  12A" in shown  # k01 or k23, as near as each other
    assert main(["radio", "/music/k00.mp3", "--length", "5", "--bpm", "300-400", *lib]) == 0
    out = capsys.readouterr()
    assert out.err == "note: only 0 of the 5 tracks asked for could follow under --bpm 300-400\n" and out.out == ""
    assert main(["path", "/music/k00.mp3", "/music/k12.mp3", "--length", "5", "--key", "2A", *lib]) == 2
    assert ("too few tracks keep the filters given (--bpm, --key, --energy) for a path this long"
            in capsys.readouterr().err)
    assert main(["similar", "/music/k00.mp3", "-k", "1", *lib]) == 0
    assert "120 BPM  " in capsys.readouterr().out


def test_search_lists_the_tracks_of_a_key_or_tempo_without_a_tag(keyed, capsys):
    lib = ["--library", str(keyed.path)]
    keyed.close()
    listed = json.loads(run_ok(capsys, ["search", "--key", "8A", "--json", *lib]))
    assert sorted(t["title"] for t in listed) == ["k07", "k19"] and all(t["musical"]["camelot"] == "8A" for t in listed)
    assert "artist7 - k07  120 BPM  8A" in run_ok(capsys, ["search", "--key", "8A", *lib])
    assert run_ok(capsys, ["search", "--bpm", "150-160", *lib]) == "no tracks match\n"
    assert main(["search", *lib]) == 2
    assert "give --tag, or --bpm, --key or --energy to list the tracks that keep them" in capsys.readouterr().err


def run_ok(capsys, args) -> str:
    assert main(args) == 0
    return capsys.readouterr().out
