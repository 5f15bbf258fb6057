"""Tempo, key, loudness and energy: measured at index time, stored, filtered on, mixed by."""

import json
import sqlite3

import numpy as np
import pytest
import soxr
from fastapi.testclient import TestClient

import keyed_songs
import synth
from soundalike import musical
from soundalike.audio import TrackMetadata
from soundalike.cli import main
from soundalike.errors import ParameterError
from soundalike.library import Library
from soundalike.library.catalogue import Catalogue, ModelDescription, TrackRecord
from soundalike.server import create_app

TEMPO_TOLERANCE = 0.04  # within 4 %, or at half or double the tempo


def tempo_ok(measured: float, true: float) -> bool:
    return any(abs(measured - true * r) <= TEMPO_TOLERANCE * true * r for r in (1, 2, 0.5))


def spread_clips(y: np.ndarray, n: int = 10) -> list[np.ndarray]:
    """``n`` spread 3 s clips of a song at keyed_songs.RATE, resampled to 16 kHz (as an excerpt's patches)."""
    y16 = soxr.resample(y, keyed_songs.RATE, musical.SAMPLE_RATE).astype(np.float32)
    size = 3 * musical.SAMPLE_RATE
    starts = np.linspace(0, len(y16) - size, n).astype(int)
    return [y16[s : s + size] for s in starts]


# --- measuring -----------------------------------------------------------------------
@pytest.mark.parametrize("bpm, tonic, mode", [(128, 9, 0), (92, 0, 1), (141, 6, 1), (76, 4, 0), (174, 10, 0)])
def test_tempo_and_key_of_synthesized_songs(bpm, tonic, mode):
    measured = musical.measure(spread_clips(keyed_songs.render(bpm, tonic, mode, seconds=40, seed=bpm)))
    assert tempo_ok(measured.bpm, bpm), measured
    assert (measured.key, measured.mode) == (tonic, mode), measured
    assert 0.5 < measured.bpm_confidence <= 1 and 0.5 < measured.key_confidence <= 1
    assert -40 < measured.loudness < -10 and 0 < measured.energy < 1


def test_loudness_follows_gain_and_silence_has_none():
    y = keyed_songs.render(120, 0, 1, seconds=20)
    quiet = musical.measure(spread_clips(y))
    loud = musical.measure(spread_clips(y * 4))  # +12 dB
    assert loud.loudness - quiet.loudness == pytest.approx(20 * np.log10(4), abs=0.05)
    assert quiet.loudness < musical.ENERGY_FULL_LUFS[1] < loud.loudness
    assert loud.energy > quiet.energy + 0.1  # quieter than -20 LUFS damps the energy
    louder = musical.measure(spread_clips(y * 8))
    assert louder.energy == pytest.approx(loud.energy, abs=1e-4)  # above it, mastering louder changes nothing
    silent = musical.measure([np.zeros(3 * musical.SAMPLE_RATE, np.float32)])
    assert silent.loudness is None and silent.energy is None and silent.key is None
    assert musical.measure([]) == musical.UNKNOWN


def test_loudness_reads_bs1770_values_and_gates():
    sr = musical.SAMPLE_RATE
    t = np.arange(5 * sr) / sr
    tone = (0.1 * np.sin(2 * np.pi * 1000 * t)).astype(np.float32)  # -20 dBFS: -23.01 LUFS in one channel
    assert musical.integrated_loudness(tone, sr) == pytest.approx(-3.01 + 20 * np.log10(0.1), abs=0.1)
    # blocks under the absolute gate (silence) and 10 LU under the loudness (the relative gate) do not
    # count: ungated, the mean would be 4.8 dB lower; only the blocks straddling the tone's end pull it down
    gated = np.concatenate([tone, np.zeros(5 * sr, np.float32), tone / 100])
    assert musical.integrated_loudness(gated, sr) == pytest.approx(musical.integrated_loudness(tone, sr), abs=0.2)
    assert musical.integrated_loudness(tone[: int(0.39 * sr)], sr) is None  # shorter than one block
    assert musical.integrated_loudness(np.zeros(sr, np.float32), sr) is None


def test_stereo_loudness_sums_the_channels_powers(tmp_path):
    sr = musical.SAMPLE_RATE
    t = np.arange(5 * sr) / sr
    tone = (0.1 * np.sin(2 * np.pi * 1000 * t)).astype(np.float32)  # -23.01 LUFS in one channel
    one_channel = -3.01 + 20 * np.log10(0.1)
    assert musical.integrated_loudness(np.stack([tone, tone]), sr) == pytest.approx(one_channel + 3.01, abs=0.1)
    assert musical.integrated_loudness(np.stack([tone, 0 * tone]), sr) == pytest.approx(one_channel, abs=0.1)
    # the mono mix of identical channels is the channel itself: as dual mono it reads BS.1770's stereo value
    assert musical.integrated_loudness(tone, sr, dual_mono=True) == pytest.approx(one_channel + 3.01, abs=0.1)
    clips = [tone[i * 3 * sr // 2 : (i + 2) * 3 * sr // 2] for i in range(2)]
    assert musical.measure(clips, sr, channels=2).loudness == pytest.approx(
        musical.measure(clips, sr).loudness + 3.01, abs=0.01)
    # more channels (5.1): the plain mix, which cannot weigh surrounds nor leave out the LFE as BS.1770 does
    assert musical.measure(clips, sr, channels=6).loudness == musical.measure(clips, sr).loudness


def test_indexing_measures_stereo_files_as_stereo(tmp_path):
    y = keyed_songs.render(120, 0, 1, seconds=40)
    music = tmp_path / "music"
    music.mkdir()
    synth.write(music / "mono.wav", y[None], keyed_songs.RATE)
    synth.write(music / "stereo.wav", np.stack([y, y]), keyed_songs.RATE)  # identical channels: +3.01 dB
    library = tmp_path / "library.sqlite"
    assert main(["index", str(music), "--library", str(library), "--workers", "1"]) == 0
    with Catalogue(library, create=False) as catalogue:
        by_name = {t.path.rsplit("/", 1)[1]: t.id for t in catalogue.tracks()}
        measured = catalogue.musical(by_name.values())
    mono, stereo = measured[by_name["mono.wav"]], measured[by_name["stereo.wav"]]
    assert stereo.loudness - mono.loudness == pytest.approx(3.01, abs=0.05)
    assert stereo.bpm == mono.bpm and stereo.key == mono.key


def calm_piece(seconds: float = 40) -> np.ndarray:
    """Soft, slowly swelling chords of pure tones, at keyed_songs.RATE."""
    t = np.arange(int(seconds * keyed_songs.RATE)) / keyed_songs.RATE
    y = np.zeros_like(t)
    for i, root in enumerate([220, 174.6, 196, 220, 164.8] * 2):
        during = (t >= i * 4) & (t < i * 4 + 6)
        swell = np.sin(np.pi * (t[during] - i * 4) / 6) ** 2
        y[during] += swell * sum(np.sin(2 * np.pi * root * ratio * t[during]) for ratio in (1, 1.25, 1.5))
    return (0.3 * y / np.abs(y).max()).astype(np.float32)


def test_energy_tells_calm_from_loud_busy_music():
    song = keyed_songs.render(170, 4, 0, seconds=40, seed=1)
    loud_busy = (0.9 * np.tanh(6 * song) / np.tanh(3)).astype(np.float32)  # drums, distorted: dense and loud
    calm, plain, loud = (musical.measure(spread_clips(y)).energy for y in (calm_piece(), song, loud_busy))
    assert calm < 0.1 and loud > 0.55 and calm < plain < loud, (calm, plain, loud)
    assert 0 <= musical.energy(-10, 5.0, 1.0) == 1 and musical.energy(-10, 0.0, 1e-6) == 0
    assert musical.energy(None, 1.0, 0.1) is None


def test_clip_keeper_keeps_spread_clips_of_any_stream():
    keeper = musical.ClipKeeper(100)  # 300 samples a clip
    for start in range(0, 100 * 300, 70):  # 100 clips, fed in odd blocks
        keeper.feed(np.arange(start, start + 70, dtype=np.float32))
    clips = keeper.clips()
    assert len(clips) == musical.MAX_CLIPS and all(len(c) == 300 for c in clips)
    firsts = [int(c[0]) // 300 for c in clips]  # the index of each kept clip
    assert firsts[0] == 0 and firsts[-1] >= 80 and firsts == sorted(set(firsts))
    short = musical.ClipKeeper(100)
    short.feed(np.ones(120, np.float32))
    assert [len(c) for c in short.clips()] == [120]


# --- keys, filters, transitions -----------------------------------------------------
def test_keys_are_read_in_every_spelling():
    for text in ("A minor", "Am", "a min", "8A", "8a"):
        assert musical.parse_key(text) == (9, 0)
    for text in ("C", "C major", "8B", "cmaj"):
        assert musical.parse_key(text) == (0, 1)
    assert musical.parse_key("F#m") == musical.parse_key("Gbm") == musical.parse_key("11A") == (6, 0)
    assert musical.parse_key("Db") == musical.parse_key("3B") == (1, 1)
    for key in range(12):
        for mode in (0, 1):
            assert musical.parse_key(musical.camelot(key, mode)) == (key, mode)
            assert musical.parse_key(musical.key_name(key, mode)) == (key, mode)
    with pytest.raises(ParameterError, match=r"^unknown key 'H minor': write it like 'A minor', 'Am', 'F#', "
                                             r"'Bb major' or, on the Camelot wheel, '8A'$"):
        musical.parse_key("H minor")
    with pytest.raises(ParameterError, match="unknown key '13A'"):
        musical.parse_key("13A")


def test_camelot_compatibility():
    a_minor = (9, 0)
    assert musical.compatible(a_minor, (9, 0))  # same
    assert musical.compatible(a_minor, (0, 1))  # relative major, 8B
    assert musical.compatible(a_minor, (4, 0)) and musical.compatible(a_minor, (2, 0))  # 9A, 7A
    assert not musical.compatible(a_minor, (7, 1))  # 9B: one hour and the other letter
    assert not musical.compatible(a_minor, (9, 1))  # A major is 11B
    assert musical.compatible((11, 1), (6, 1))  # 1B and 2B: the wheel wraps
    assert musical.compatible((8, 0), (1, 0))  # 1A and 12A


def test_tempo_steps_count_half_and_double_time_both_ways():
    assert musical.tempo_step(120, 124) == musical.tempo_step(124, 120) == 4
    assert musical.tempo_step(70, 141) == musical.tempo_step(141, 70) == 0.5  # double time: 141 is 70.5 halved
    assert musical.tempo_step(140, 69) == musical.tempo_step(69, 140) == 1  # half time
    assert musical.tempo_step(135.9, 70.9) == pytest.approx(musical.tempo_step(70.9, 135.9)) == pytest.approx(2.95)
    rules = musical.Transitions(bpm_step=5)
    fast, slow = (musical.Musical(bpm, 0.9, 0, 1, 0.9, -10.0, 0.5) for bpm in (135.9, 70.9))
    assert rules.allows(fast, slow) and rules.allows(slow, fast)
    assert not musical.Transitions(bpm_step=2).allows(fast, slow) and not musical.Transitions(bpm_step=2).allows(slow, fast)


def test_bad_filters_say_what_to_write():
    with pytest.raises(ParameterError, match=r"^--bpm 'fast' is not valid: give a value or a range like 120-128 "
                                             r"\(from 1 to 1000, low first\)$"):
        musical.Filter(bpm="fast")
    with pytest.raises(ParameterError, match="--bpm '128-120' is not valid"):
        musical.Filter(bpm="128-120")
    with pytest.raises(ParameterError, match=r"--energy '2' is not valid: .* like 0.6-1 \(from 0 to 1"):
        musical.Filter(energy="2")
    with pytest.raises(ParameterError, match="unknown key 'X'"):
        musical.Filter(key="Am, X")
    with pytest.raises(ParameterError, match="--bpm-step must be a number of BPM >= 0, got -1"):
        musical.Transitions(bpm_step=-1)
    assert musical.parse_bpm("124") == pytest.approx((124 * 0.96, 124 * 1.04))
    assert musical.parse_energy("0.5") == pytest.approx((0.4, 0.6))


# --- a controlled catalogue -----------------------------------------------------------
# (bpm, key, mode, energy) of each track: 120 to 126 BPM, keys on the first 6 hours of the
# Camelot wheel, minor and major in turns; its vector drifts slowly along the list
TRACKS = [(120 + (i % 4) * 2, *musical.parse_key(f"{i % 6 + 1}{'AB'[i // 6 % 2]}"),
           round(0.1 + 0.8 * (i % 5) / 4, 2)) for i in range(40)]


@pytest.fixture(scope="module")
def measured_library(tmp_path_factory):
    """A library of 40 tracks with known measures and vectors (no audio), plus 2 never measured."""
    path = tmp_path_factory.mktemp("musical") / "library.sqlite"
    rng = np.random.default_rng(0)
    with Catalogue(path) as catalogue:
        catalogue.bind_model(ModelDescription("msd-musicnn", ("rock", "calm"), (16,), (1.0,)))
        direction = rng.standard_normal(16)
        for i, (bpm, key, mode, energy) in enumerate(TRACKS + [(None, None, None, None)] * 2):
            vector = (direction * i / 10 + rng.standard_normal(16)).astype(np.float32)
            measures = musical.Musical(bpm, 0.9, key, mode, 0.8, -12.0, energy) if bpm else None
            catalogue.put(TrackRecord(
                path=f"/music/{i:02d}.flac", size=1, mtime_ns=1,
                metadata=TrackMetadata(artist=f"Artist {i}", title=f"Song {i}", album=None, genre=None,
                                       duration=200.0),
                excerpt=10, vector=vector, tags=np.array([i / 42, 1 - i / 42], np.float32),
                patches=np.tile(vector, (2, 1)).astype(np.float16), starts=np.array([0, 3], np.float32),
                musical=measures))
    return path


def measures_of(path, ids) -> dict[int, musical.Musical]:
    with Catalogue(path, create=False) as catalogue:
        return catalogue.musical(ids)


def run_json(capsys, args) -> list[dict]:
    assert main(args) == 0
    return json.loads(capsys.readouterr().out)


def test_library_turns_filters_into_ids(measured_library):
    with Library(measured_library) as library:
        by_bpm = library.allowed(measures=musical.Filter(bpm="124-127"))
        assert by_bpm.tolist() == [i + 1 for i, t in enumerate(TRACKS) if 124 <= t[0] <= 127]
        by_key = library.allowed(measures=musical.Filter(key="3A, Eb"))  # Bb minor or Eb major
        assert by_key.tolist() == [i + 1 for i, t in enumerate(TRACKS) if t[1:3] in ((10, 0), (3, 1))]
        assert len(by_key) == 7
        both = library.allowed(tag="calm", min_prob=0.5, measures=musical.Filter(energy="0.7-1"))
        assert both.tolist() == [i + 1 for i, t in enumerate(TRACKS) if t[3] >= 0.7 and 1 - i / 42 >= 0.5]
        assert library.allowed(measures=musical.Filter()) is None


def test_cli_filters(measured_library, capsys):
    lib = ["--library", str(measured_library)]
    found = run_json(capsys, ["similar", "1", "-k", "5", "--bpm", "126", "--json", *lib])
    assert len(found) == 5
    assert all(126 * 0.96 <= m.bpm <= 126 * 1.04 for m in measures_of(measured_library, [t["id"] for t in found]).values())
    found = run_json(capsys, ["similar", "1", "-k", "3", "--key", "Bbm", "--energy", "0-0.5", "--json", *lib])
    assert sorted(t["id"] for t in found) == [i + 1 for i, t in enumerate(TRACKS)
                                              if t[1:3] == (10, 0) and t[3] <= 0.5 and i > 0] == [3, 27]
    ranked = run_json(capsys, ["search", "--tag", "rock", "-k", "3", "--bpm", "125-130", "--json", *lib])
    in_range = [i + 1 for i, t in enumerate(TRACKS) if 125 <= t[0] <= 130]
    assert [t["id"] for t in ranked] == sorted(in_range, reverse=True)[:3]  # "rock" grows with the id


def test_cli_refuses_bad_values(measured_library, capsys):
    assert main(["similar", "1", "--bpm", "fast", "--library", str(measured_library)]) == 2
    assert capsys.readouterr().err == ("soundalike: error: --bpm 'fast' is not valid: give a value or a range like "
                                       "120-128 (from 1 to 1000, low first)\n")
    assert main(["radio", "1", "--key", "H", "--library", str(measured_library)]) == 2
    assert "unknown key 'H'" in capsys.readouterr().err


def check_transitions(path, ids, step):
    measured = measures_of(path, ids)
    for before, after in zip(ids, ids[1:]):
        a, b = measured[before], measured[after]
        assert musical.compatible((a.key, a.mode), (b.key, b.mode)), (a, b)
        assert musical.tempo_step(a.bpm, b.bpm) <= step, (a, b)


def test_radio_and_path_keep_harmonic_keys_and_tempo_steps(measured_library, capsys):
    lib = ["--library", str(measured_library)]
    plain = run_json(capsys, ["radio", "1", "--length", "8", "--json", *lib])
    ids = [1] + [t["id"] for t in plain]
    with pytest.raises(AssertionError):  # without the rules, the keys wander
        check_transitions(measured_library, ids, 2.5)
    mixed = run_json(capsys, ["radio", "1", "--length", "8", "--harmonic", "--bpm-step", "2.5", "--json", *lib])
    assert len(mixed) == 8
    check_transitions(measured_library, [1] + [t["id"] for t in mixed], 2.5)
    journey = run_json(capsys, ["path", "1", "39", "--length", "6", "--harmonic", "--bpm-step", "5", "--json", *lib])
    assert len(journey) == 6
    check_transitions(measured_library, [t["id"] for t in journey], 5)
    assert main(["path", "1", "39", "--length", "6", "--harmonic", "--bpm-step", "0", *lib]) == 2
    assert "no tracks near this path keep the key and tempo rules given (--harmonic, --bpm-step)" in capsys.readouterr().err


def test_api_filters_and_mixing(measured_library):
    with TestClient(create_app(measured_library)) as client:
        track = client.get("/api/tracks/1").json()
        assert track["musical"] == {"bpm": 120.0, "bpm_confidence": 0.9, "key": "Ab minor", "camelot": "1A",
                                    "key_confidence": 0.8, "loudness": -12.0, "energy": 0.1}
        assert client.get("/api/tracks/41").json()["musical"]["bpm"] is None  # never measured
        listed = client.get("/api/tracks", params={"bpm": "124-127", "limit": 100}).json()
        assert sorted(t["id"] for t in listed) == [i + 1 for i, t in enumerate(TRACKS) if 124 <= t[0] <= 127]
        assert all(124 <= t["musical"]["bpm"] <= 127 for t in listed)  # listed with their measures
        assert client.get("/api/tracks", params={"q": "Song 41"}).json()[0]["musical"]["bpm"] is None  # never measured
        similar = client.get("/api/tracks/1/similar", params={"key": "3A", "k": 3}).json()
        assert similar and all((m.key, m.mode) == (10, 0)  # Bb minor
                               for m in measures_of(measured_library, [t["id"] for t in similar]).values())
        history = []
        for _ in range(5):
            chosen = client.post("/api/radio/next", json={"seeds": [1], "history": history, "harmonic": True,
                                                          "bpm_step": 2.5}).json()
            history.append(chosen["id"])
        check_transitions(measured_library, [1] + history, 2.5)
        journey = client.post("/api/path", json={"songs": [1, 39], "length": 6, "harmonic": True, "bpm_step": 5})
        check_transitions(measured_library, [t["id"] for t in journey.json()], 5)
        bad = client.get("/api/tracks", params={"key": "H"})
        assert bad.status_code == 422 and bad.json()["detail"].startswith("unknown key 'H'")
        assert client.post("/api/path", json={"songs": [1, 39], "bpm_step": -1}).status_code == 422


def test_export_includes_measures(measured_library, tmp_path):
    with Library(measured_library) as library:
        from soundalike.library import export

        export.export(library, tmp_path / "out.npz")
        export.export(library, tmp_path / "out.csv")
    data = np.load(tmp_path / "out.npz")
    assert data["bpm"][0] == 120.0 and data["camelot"][0] == "1A" and np.isnan(data["bpm"][-1])
    header, first = (tmp_path / "out.csv").read_text().splitlines()[:2]
    columns = dict(zip(header.split(","), first.split(",")))
    assert (columns["bpm"], columns["key"], columns["camelot"], columns["loudness"]) == ("120.0", "Ab minor", "1A",
                                                                                          "-12.0")


# --- indexing and upgrading ------------------------------------------------------------
SONGS = {"a/dance.flac": (128, 9, 0, 40.0), "b/ballad.mp3": (84, 3, 1, 30.0), "c/short.wav": (100, 7, 1, 2.5)}


@pytest.fixture(scope="module")
def indexed(tmp_path_factory):
    music = tmp_path_factory.mktemp("keyed")
    for rel, (bpm, tonic, mode, seconds) in SONGS.items():
        (music / rel).parent.mkdir(parents=True, exist_ok=True)
        synth.write(music / rel, keyed_songs.render(bpm, tonic, mode, seconds=seconds)[None], keyed_songs.RATE)
    path = tmp_path_factory.mktemp("lib") / "library.sqlite"
    assert main(["index", str(music), "--library", str(path), "--workers", "1"]) == 0
    return path


def test_index_stores_tempo_key_and_loudness(indexed):
    with Catalogue(indexed, create=False) as catalogue:
        by_name = {t.path.rsplit("/", 1)[1]: catalogue.musical([t.id])[t.id] for t in catalogue.tracks()}
    for rel, (bpm, tonic, mode, _) in SONGS.items():
        measured = by_name[rel.rsplit("/", 1)[1]]
        assert (measured.key, measured.mode) == (tonic, mode), (rel, measured)
        assert -40 < measured.loudness < -10 and 0 < measured.energy < 1
        if rel != "c/short.wav":  # 2.5 s is too short for a tempo to be sure of
            assert tempo_ok(measured.bpm, bpm), (rel, measured)


def test_index_without_measures_when_switched_off(tmp_path, monkeypatch):
    monkeypatch.setenv(musical.ENABLED_VARIABLE, "0")
    synth.write(tmp_path / "song.wav", keyed_songs.render(120, 0, 1, seconds=5)[None], keyed_songs.RATE)
    assert main(["index", str(tmp_path / "song.wav"), "--library", str(tmp_path / "lib.sqlite"), "--workers", "1"]) == 0
    assert measures_of(tmp_path / "lib.sqlite", [1]) == {1: musical.UNKNOWN}


# the tracks table of schema 2 (soundalike 0.2), the rest of the schema being as it was
V2_TRACKS = """
CREATE TABLE tracks (
    id INTEGER PRIMARY KEY,
    path TEXT NOT NULL UNIQUE,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    artist TEXT, title TEXT, album TEXT, genre TEXT,
    duration REAL,
    excerpt INTEGER NOT NULL,
    vector BLOB NOT NULL,
    tags BLOB NOT NULL,
    patches BLOB NOT NULL,
    starts BLOB NOT NULL,
    added_at REAL NOT NULL,
    generation INTEGER NOT NULL
);
CREATE TABLE staged (
    path TEXT PRIMARY KEY, model TEXT NOT NULL, size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL,
    artist TEXT, title TEXT, album TEXT, genre TEXT, duration REAL, excerpt INTEGER,
    vector BLOB, tags BLOB, patches BLOB, starts BLOB, reason TEXT
);
"""
V2_COLUMNS = ("id, path, size, mtime_ns, artist, title, album, genre, duration, excerpt, vector, tags, patches, "
              "starts, added_at, generation")


def make_v2_library(source, target) -> None:
    """A library of schema 2 holding ``source``'s tracks and meta."""
    db = sqlite3.connect(target)
    db.executescript(V2_TRACKS + "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);")
    db.execute("ATTACH DATABASE ? AS new", (str(source),))
    db.execute(f"INSERT INTO tracks SELECT {V2_COLUMNS} FROM new.tracks")
    db.execute("INSERT INTO meta SELECT key, value FROM new.meta")
    db.execute("UPDATE meta SET value = '2' WHERE key = 'schema_version'")
    db.commit()
    db.execute("DETACH DATABASE new")
    db.close()


def test_a_schema_2_library_opens_keeps_its_tracks_and_has_no_measures(indexed, tmp_path, capsys):
    old = tmp_path / "old.sqlite"
    make_v2_library(indexed, old)
    with Library(old) as library:
        assert library.catalogue.get_meta("schema_version") == "3"
        assert library.catalogue.count() == len(SONGS)
        assert set(library.catalogue.musical(library.catalogue.ids()).values()) == {musical.UNKNOWN}
        assert library.allowed(measures=musical.Filter(bpm="60-200")).tolist() == []
    found = run_json(capsys, ["similar", "1", "--json", "--library", str(old)])
    assert len(found) == len(SONGS) - 1
    frozen = tmp_path / "frozen.sqlite"  # one that cannot be upgraded is read as it is
    make_v2_library(indexed, frozen)
    with Library(frozen, readonly=True) as library:
        assert library.catalogue.get_meta("schema_version") == "2"
        assert library.catalogue.musical([1, 2]) == {}
        assert library.allowed(measures=musical.Filter(key="Am")).tolist() == []
        assert library.catalogue.count() == len(SONGS)
    # what to do to measure them: re-analyse with the library's model
    model = Catalogue(old, create=False).model
    assert main(["index", "--reanalyze", "--model", model, "--library", str(old), "--workers", "1"]) == 0
    assert None not in {m.key for m in measures_of(old, [1, 2, 3]).values()}
