"""Search by passage: times, spans, the patch index kept in step, the CLI and the API."""

import dataclasses
import json
import shutil
import sqlite3
from pathlib import Path

import re

import numpy as np
import pytest

import synth
from songs import render
from soundalike import passages
from soundalike.cli import main
from soundalike.errors import ParameterError
from soundalike.library import Library
from soundalike.library.patches import PATCH_BITS, PatchIndex, labels_of, patch_count

RATE = 22_050
SECTION = 6.0  # seconds of each section: two patches
TRACKS = {  # file -> its sections, each sound found in no other track
    "a/sections.flac": [("chord", 0), ("tone", 1760), ("clicks", 0)],
    "b/other.flac": [("noise", 0), ("chord", 7), ("tone", 220)],
    "c/third.wav": [("tone", 660), ("noise", 3), ("chord", 3)],
}
COPY = "dupes/sections_copy.mp3"  # the recording of a/sections.flac again


def sections(recipes) -> np.ndarray:
    return np.concatenate([render(r, SECTION, RATE) for r in recipes], axis=1)


@pytest.fixture(scope="module")
def library(tmp_path_factory) -> Path:
    """Every patch of three 18 s tracks of distinct sections, and a copy of the first."""
    music = tmp_path_factory.mktemp("music")
    for name, recipes in TRACKS.items():
        (music / name).parent.mkdir(parents=True, exist_ok=True)
        synth.write(music / name, sections(recipes), RATE)
    (music / COPY).parent.mkdir()
    synth.write(music / COPY, sections(TRACKS["a/sections.flac"]), RATE)
    path = tmp_path_factory.mktemp("lib") / "library.sqlite"
    assert main(["index", str(music), "--library", str(path), "--workers", "1", "--excerpt", "0"]) == 0
    return path


def tracks(library: Path) -> dict:
    """File name -> track of the library."""
    with Library(library) as lib:
        return {Path(t.path).name: t for t in lib.catalogue.tracks()}


def ids(library: Path) -> dict[str, int]:
    return {name: t.id for name, t in tracks(library).items()}


def noisy_clip(source: Path, start: float, seconds: float, out: Path) -> Path:
    """``seconds`` of ``source`` from ``start``, with noise 20 dB down, as a 128 kbps MP3."""
    from soundalike import audio

    y = audio.load(source, sr=RATE, start=start, duration=seconds)
    noise = np.random.default_rng(99).standard_normal(len(y)).astype(np.float32)  # not the "noise" section's seed
    noise *= np.sqrt(np.mean(y**2) / 100 / np.mean(noise**2))
    return synth.write(out, np.clip(y + noise, -1, 1)[None], RATE)


@pytest.mark.parametrize(("text", "seconds"), [("83", 83.0), ("83.5", 83.5), ("1:23", 83.0), ("0:06.5", 6.5),
                                               ("1:02:03", 3723.0), (".5", 0.5)])
def test_times_are_seconds_or_minutes_and_seconds(text, seconds):
    assert passages.parse_time(text) == seconds


@pytest.mark.parametrize("text", ["1:75", "x", "-3", "1:2:3:4", ""])
def test_a_time_that_is_not_one_is_refused(text):
    with pytest.raises(ParameterError, match="is not a time"):
        passages.parse_time(text)


@pytest.mark.parametrize(("seconds", "text"), [(83.0, "1:23"), (83.46, "1:23.5"), (3723.0, "1:02:03"), (5.0, "0:05")])
def test_times_are_printed_as_minutes_and_seconds(seconds, text):
    assert passages.format_time(seconds) == text


@pytest.mark.parametrize(("seconds", "text"), [(83.0, "1:23.0"), (83.46, "1:23.5"), (3723.0, "1:02:03.0"),
                                               (59.96, "1:00.0")])
def test_times_in_columns_always_have_tenths(seconds, text):
    assert passages.format_time(seconds, tenths=True) == text


def test_a_short_span_is_widened_to_a_patch_and_a_long_one_cut_at_the_end():
    assert passages.span("x.mp3", 18.0, 10.0, 11.0, 3.0) == (9.0, 12.0)
    assert passages.span("x.mp3", 18.0, 17.5, None, 3.0) == (15.0, 18.0)
    assert passages.span("x.mp3", 18.0, 6.0, 99.0, 3.0) == (6.0, 18.0)
    assert passages.span("x.mp3", None, 6.0, None, 3.0) == (6.0, float("inf"))


def test_a_clip_cut_from_a_track_finds_it_at_the_time_it_was_cut(library, tmp_path):
    with Library(library) as lib:
        source = next(t for t in lib.catalogue.tracks() if t.path.endswith("sections.flac"))
        clip = noisy_clip(Path(source.path), 6.0, 6.0, tmp_path / "clip.mp3")
        query = passages.passage(lib, str(clip))
        found = passages.similar_passages(lib, query, k=3)
    assert query.track is None and query.name == "clip.mp3"
    assert np.allclose(np.diff(query.starts), passages.QUERY_HOP_SECONDS, atol=0.01)  # analysed in overlapping patches
    assert Path(found[0].track.path).name in ("sections.flac", "sections_copy.mp3")
    assert abs(found[0].start - 6.0) <= 3.0
    assert len({m.track.id for m in found}) == len(found)
    assert not any(Path(m.track.path).name.startswith("sections") for m in found[1:])  # one copy of a recording


def test_alignment_finds_a_spectrogram_slice_where_it_was_cut_whatever_its_level():
    track = np.random.default_rng(0).normal(-40, 10, (passages.ALIGN_BANDS, 500))
    correlation = passages.alignment(track[:, 137:337] + 12.0, track)  # 12 dB louder
    assert correlation.shape == (301,)
    assert int(np.argmax(correlation)) == 137 and correlation[137] == pytest.approx(1.0)
    assert np.max(np.delete(correlation, 137)) < 0.3  # unrelated noise elsewhere
    assert passages.alignment(track, track[:, :100]).shape == (0,)  # longer than the track: nowhere


def test_alignment_scores_a_flat_stretch_zero_and_stays_within_one():
    track = np.random.default_rng(0).normal(-40, 10, (passages.ALIGN_BANDS, 500))
    track[:, 200:400] = -97.25  # digital silence at the spectrogram's floor
    query = np.stack([track[:, 50:150], np.full_like(track[:, :100], -97.25)])  # some sound; silence
    correlation = passages.alignment(query, track)  # (2, 401)
    assert np.all(np.abs(correlation) <= 1.0)
    assert np.all(correlation[0, 200:301] == 0) and correlation[0, 50] == pytest.approx(1.0)
    assert np.all(correlation[1] == 0)  # a silent query aligns nowhere


def test_a_track_silent_where_the_passage_is_not_is_not_taken_for_its_audio(library, tmp_path):
    """A stretch of digital silence once scored a "correlation" of 2 and more: rounding noise
    over a span without variance; it must not place the passage there."""
    silent = synth.write(tmp_path / "silent.flac", np.concatenate(
        [render(("chord", 0), 6.0, RATE), np.zeros((1, 12 * RATE), np.float32), render(("tone", 660), 6.0, RATE)],
        axis=1), RATE)
    clip = synth.write(tmp_path / "clip.flac", render(("noise", 3), 3.0, RATE), RATE)
    with Library(library) as lib:
        query = passages.passage(lib, str(clip))
        track = dataclasses.replace(lib.catalogue.tracks()[0], path=str(silent), duration=24.0)
    match = passages.PassageMatch(track, 0.5, 1.0, 0.0)
    assert passages.localise(match, [1.0], passages.passage_frames(query)) is match


def with_tags(library: Path, tmp_path: Path, **columns: dict[str, str]) -> Path:
    """A copy of the library whose tracks (by file name) have these artists, genres..."""
    copy = tmp_path / "tagged.sqlite"
    shutil.copy(library, copy)
    with sqlite3.connect(copy) as db:
        for column, values in columns.items():
            for name, value in values.items():
                db.execute(f"UPDATE tracks SET {column} = ? WHERE path LIKE ?", (value, f"%/{name}"))
    return copy


def names_like(library: Path, query, start=None, end=None, **filters) -> list[str]:
    with Library(library) as lib:
        found = passages.similar_passages(lib, passages.passage(lib, query, start, end), k=10, **filters)
    return [Path(m.track.path).name for m in found]


def test_the_filters_of_similar_keep_only_their_tracks(library, tmp_path):
    from soundalike.musical import Filter

    source = tracks(library)["sections.flac"].path
    assert sorted(names_like(library, source, 6.0, 12.1)) == ["other.flac", "third.wav"]
    assert names_like(library, source, 6.0, 12.1, measures=Filter(bpm="100-140")) == ["third.wav"]  # other: 60 BPM
    tagged = with_tags(library, tmp_path, artist={"sections.flac": "Ann", "other.flac": "ann"},
                       genre={"other.flac": "Flute"})
    assert names_like(tagged, source, 6.0, 12.1, exclude_artist=True) == ["third.wav"]
    assert names_like(tagged, source, 6.0, 12.1, tag="flute", min_prob=1.0) == ["other.flac"]
    clip = noisy_clip(Path(source), 6.0, 6.0, tmp_path / "clip.mp3")  # its source found by its audio, unless filtered
    assert names_like(library, str(clip), measures=Filter(bpm="50-70")) == ["other.flac"]


@pytest.mark.parametrize("scan", [passages.SCAN_SECONDS, 5.0])  # the whole track, or around its best patch pairs
def test_a_clip_is_localised_by_its_audio_to_within_a_frame(library, tmp_path, monkeypatch, scan):
    monkeypatch.setattr(passages, "SCAN_SECONDS", scan)
    with Library(library) as lib:
        source = next(t for t in lib.catalogue.tracks() if t.path.endswith("sections.flac"))
        clip = noisy_clip(Path(source.path), 4.3, 5.0, tmp_path / "clip.mp3")  # across the chord -> tone change
        found = passages.similar_passages(lib, passages.passage(lib, str(clip)), k=3)
    assert Path(found[0].track.path).name in ("sections.flac", "sections_copy.mp3")
    assert abs(found[0].start - 4.3) <= 0.1  # patches 3 s apart place it no closer than their grid
    assert [m.own_audio for m in found] == [True] + [False] * (len(found) - 1)  # why it is first


def test_a_library_track_uses_its_stored_patches_and_never_finds_itself_or_its_copy(library):
    with Library(library) as lib:
        source = next(t for t in lib.catalogue.tracks() if t.path.endswith("sections.flac"))
        seed = lib.seed(source)
        query = passages.passage(lib, seed, 6.0, 12.1)
        found = passages.similar_passages(lib, query, k=10)
    assert query.track == source
    assert np.array_equal(query.starts, seed.starts[(seed.starts >= 5.9) & (seed.starts < 9.2)])  # stored, no analysis
    names = [Path(m.track.path).name for m in found]
    assert sorted(names) == ["other.flac", "third.wav"]


def test_the_patch_index_follows_the_library(library, tmp_path):
    copy = tmp_path / "library.sqlite"
    shutil.copy(library, copy)
    with Library(copy) as lib:
        index = lib.patch_index
        assert len(index) == patch_count(lib.catalogue) == 4 * 6
        assert PatchIndex.path(copy).is_file()
        gone = next(t for t in lib.catalogue.tracks() if t.path.endswith("third.wav"))
        lib.catalogue.remove([gone.path])
        music = Path(gone.path).parent.parent
        new = synth.write(tmp_path / "new.wav", sections([("tone", 330), ("chord", 9)]), RATE)
    assert main(["index", str(music / "a"), str(new), "--library", str(copy), "--workers", "1", "--excerpt", "0"]) == 0
    with Library(copy) as lib:
        index = lib.patch_index
        expected = np.concatenate([labels_of([i], [len(p)]) for i, p in lib.catalogue.iter_patches()])
        assert np.array_equal(np.sort(index.labels), np.sort(expected))
        assert gone.id not in set((index.labels >> PATCH_BITS).tolist())
        generation = lib.catalogue.generation
    with Library(copy) as lib:  # saved: opened again without a rebuild
        assert lib.patch_index.generation == generation


def test_similar_from_to_prints_json_with_times(library, capsys):
    path = tracks(library)["sections.flac"].path
    assert main(["similar", str(path), "--from", "0:06", "--to", "0:12", "--json", "-k", "2",
                 "--library", str(library)]) == 0
    found = json.loads(capsys.readouterr().out)
    assert [m["rank"] for m in found] == [1, 2]
    assert {"start", "query_start", "score", "id", "path"} <= set(found[0])
    assert all(0 <= m["start"] <= 18 and 6 <= m["query_start"] <= 12 for m in found)


def test_similar_from_to_prints_a_table(library, capsys):
    assert main(["similar", str(ids(library)["sections.flac"]), "--from", "6", "--to", "12", "-k", "1",
                 "--library", str(library)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("passages like 0:06.0-0:12.0 of ")
    assert re.fullmatch(r"  1   0\.\d{3}  at   0:\d\d\.\d  like   0:(0[6-9]|1[0-2])\.\d  (other|third)", out[1])
    assert out[2] == " " * 41 + next(t.path for t in tracks(library).values() if t.label == out[1][41:])
    assert len(out) == 3


def test_similar_from_to_marks_the_track_with_the_passages_own_audio(library, tmp_path, capsys):
    clip = noisy_clip(Path(tracks(library)["sections.flac"].path), 4.3, 5.0, tmp_path / "clip.mp3")
    assert main(["similar", str(clip), "-k", "2", "--from", "0", "--library", str(library)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert re.search(r"  sections(_copy)?  \[same audio\]$", out[1]) and "[same audio]" not in out[3]
    assert out[-1] == "[same audio]: the passage's own audio is there (it comes first whatever its score)"


def test_similar_from_to_takes_the_filters_of_similar(library, capsys):
    track = str(ids(library)["sections.flac"])
    assert main(["similar", track, "--from", "6", "--to", "12", "--bpm", "100-140", "--json",
                 "--library", str(library)]) == 0
    assert [Path(m["path"]).name for m in json.loads(capsys.readouterr().out)] == ["third.wav"]
    assert main(["similar", track, "--from", "6", "--to", "12", "--bpm", "fast", "--library", str(library)]) == 2
    assert capsys.readouterr().err.startswith("soundalike: error: ")


@pytest.mark.parametrize(("span", "message"), [
    (["--from", "0:12", "--to", "0:06"], "sections.flac: the passage ends at 0:06, not after it starts (0:12)"),
    (["--from", "5:00"], "sections.flac: the passage starts at 5:00, after the track's end (0:18)"),
])
def test_a_span_out_of_order_or_past_the_end_is_one_line_naming_the_file(library, capsys, span, message):
    assert main(["similar", str(ids(library)["sections.flac"]), *span, "--library", str(library)]) == 2
    assert capsys.readouterr().err == f"soundalike: error: {message}\n"


@pytest.fixture(scope="module")
def client(library):
    from fastapi.testclient import TestClient

    from soundalike.server import create_app

    with TestClient(create_app(library)) as c:
        yield c


def test_api_finds_passages_like_a_span_of_a_track(client, library):
    track = ids(library)["sections.flac"]
    answer = client.get(f"/api/tracks/{track}/passages", params={"start": 6, "end": 12, "k": 5}).json()
    assert (answer["name"], answer["start"], answer["end"]) == ("sections.flac", 6, 12)
    assert sorted(Path(m["path"]).name for m in answer["matches"]) == ["other.flac", "third.wav"]
    assert all({"start", "score", "tags"} <= set(m) and m["own_audio"] is False for m in answer["matches"])
    as_minutes = client.get(f"/api/tracks/{track}/passages", params={"start": "0:06", "end": "0:12", "k": 5}).json()
    assert as_minutes == answer


def test_api_passages_take_the_filters_of_similar(client, library, tmp_path):
    track = ids(library)["sections.flac"]
    answer = client.get(f"/api/tracks/{track}/passages", params={"start": 6, "end": 12, "bpm": "100-140"}).json()
    assert [Path(m["path"]).name for m in answer["matches"]] == ["third.wav"]
    clip = noisy_clip(Path(tracks(library)["sections.flac"].path), 6.0, 6.0, tmp_path / "clip.mp3")
    with open(clip, "rb") as f:
        answer = client.post("/api/passages/upload", params={"bpm": "50-70"}, files={"file": ("clip.mp3", f)}).json()
    assert [(Path(m["path"]).name, m["own_audio"]) for m in answer["matches"]] == [("other.flac", False)]
    response = client.get(f"/api/tracks/{track}/passages", params={"bpm": "fast"})
    assert response.status_code == 422 and "fast" in response.json()["detail"]


def test_api_finds_the_track_an_uploaded_clip_was_cut_from(client, library, tmp_path):
    source = Path(tracks(library)["sections.flac"].path)
    clip = noisy_clip(source, 12.0, 6.0, tmp_path / "clip.mp3")
    with open(clip, "rb") as f:
        answer = client.post("/api/passages/upload", files={"file": ("my clip.mp3", f, "audio/mpeg")}).json()
    assert answer["name"] == "my clip.mp3"
    assert Path(answer["matches"][0]["path"]).name in ("sections.flac", "sections_copy.mp3")
    assert [m["own_audio"] for m in answer["matches"]] == [True] + [False] * (len(answer["matches"]) - 1)
    assert abs(answer["matches"][0]["start"] - 12) <= 3


def test_api_refuses_a_span_that_ends_before_it_starts(client, library):
    track = ids(library)["sections.flac"]
    response = client.get(f"/api/tracks/{track}/passages", params={"start": 12, "end": 6})
    assert response.status_code == 422
    assert response.json() == {"detail": "sections.flac: the passage ends at 0:06, not after it starts (0:12)"}
    assert client.get("/api/tracks/999999/passages").status_code == 404
    response = client.get(f"/api/tracks/{track}/passages", params={"start": "1:75"})
    assert response.status_code == 422
    assert response.json() == {"detail": "'1:75' is not a time: the seconds after a colon must be under 60"}
