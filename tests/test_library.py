"""Indexing a folder of synthesized music and querying it, through the CLI and the API."""

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import synth
from soundalike import ParameterError
from soundalike.cli import main
from soundalike.library import Library
from soundalike.library.vectors import VectorIndex, library_space

from songs import RATE, SECONDS, SONGS, make_music, render, write_song  # noqa: F401


@pytest.fixture(scope="module")
def music(tmp_path_factory):
    return make_music(tmp_path_factory.mktemp("music"))


@pytest.fixture(scope="module")
def built(music, tmp_path_factory, new_library):
    """The music indexed, in each backend in turn (a file's path, or a database's URL)."""
    library = new_library(tmp_path_factory.mktemp("lib"), "library")
    assert main(["index", str(music), "--library", library, "--workers", "1"]) == 0
    return library


def run_json(capsys, *args):
    capsys.readouterr()
    assert main(list(args)) == 0
    return json.loads(capsys.readouterr().out)


def test_index_stores_tracks_with_metadata_and_arrays(built):
    with Library(built) as lib:
        tracks = {Path(t.path).name: t for t in lib.catalogue.tracks()}
        assert len(tracks) == 7
        t = tracks["noise.ogg"]
        assert (t.artist, t.title, t.genre) == ("Bob", "Noise Wash", "Noise")
        assert t.duration == pytest.approx(SECONDS, abs=0.1)
        assert tracks["clicks.wav"].artist is None
        patches, starts = lib.catalogue.patches(t.id)
        assert patches.shape == (2, 400) and np.allclose(starts, [0, 2.992])
        np.testing.assert_allclose(lib.catalogue.arrays("vector", [t.id])[1][0], patches.mean(axis=0), atol=1e-2)
        # the default: MSD's and MTT's embeddings side by side, and both tag sets (8 tags in common)
        assert lib.catalogue.model == "msd-mtt-musicnn" and len(lib.catalogue.tag_names) == 92
        assert lib.space.blocks == (200, 200) and lib.space.weights == (0.6, 0.4)
        # 7 s is too short for the default 10-patch excerpt: analysed whole, and recorded so
        assert {r[0] for r in lib.catalogue.db.execute("SELECT excerpt FROM tracks")} == {0}


def test_second_run_is_incremental(music, built, tmp_path, capsys, copy_library):
    library = copy_library(built, tmp_path, "lib")
    capsys.readouterr()
    assert main(["index", str(music), "--library", str(library), "--workers", "1"]) == 0
    assert "indexed 0, unchanged 7, removed 0, failed 0" in capsys.readouterr().out
    # change one file, delete another, add a third
    changed = music / "c" / "low_tone.opus"
    os.utime(changed, ns=(time.time_ns(), time.time_ns()))
    moved = tmp_path / "away.wav"
    shutil.move(music / "b" / "clicks.wav", moved)
    extra = write_song(music, "d/new.flac", "Di", "New One", None, ("tone", 440))
    try:
        assert main(["index", str(music), "--library", str(library), "--workers", "1"]) == 0
        assert "indexed 2, unchanged 5, removed 1, failed 0 (7 tracks" in capsys.readouterr().out
    finally:
        shutil.move(moved, music / "b" / "clicks.wav")
        extra.unlink()
        os.utime(changed, ns=(time.time_ns(), time.time_ns()))


def test_scan_finds_audio_by_extension_and_skips_hidden(tmp_path):
    from soundalike.library.indexer import find_audio

    for rel in ["a/x.MP3", "a/y.flac", "a/notes.txt", ".hidden/z.ogg", "b/.w.wav", "b/c/d.opus"]:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"x")
    found = [Path(f.path).relative_to(tmp_path).as_posix() for f in find_audio([tmp_path])]
    assert found == ["a/x.MP3", "a/y.flac", "b/c/d.opus"]
    with pytest.raises(ParameterError, match="nowhere: no such file or folder"):
        list(find_audio([tmp_path / "nowhere"]))


def test_failures_are_recorded_and_the_run_goes_on(tmp_path, capsys):
    root = tmp_path / "m"
    write_song(root, "good.flac", "G", "Good", None, ("tone", 300))
    (root / "bad.mp3").write_text("this is not audio")
    (root / "empty.ogg").write_bytes(b"")
    library = tmp_path / "l.sqlite"
    assert main(["index", str(root), "--library", str(library), "--workers", "1"]) == 1
    out = capsys.readouterr().out
    assert "indexed 1, unchanged 0, removed 0, failed 2" in out
    assert f"failed: {root / 'empty.ogg'}: empty file (0 bytes)" in out
    stats = run_json(capsys, "stats", "--library", str(library), "--json")
    assert stats["tracks"] == 1 and stats["failed"] == 2
    assert {f["path"] for f in stats["failures"]} == {str(root / "bad.mp3"), str(root / "empty.ogg")}
    # unchanged failures are skipped next time, unless asked
    assert main(["index", str(root), "--library", str(library), "--workers", "1"]) == 0
    assert "2 files that failed before are unchanged" in capsys.readouterr().out
    assert main(["index", str(root), "--library", str(library), "--workers", "1", "--retry-failed"]) == 1


def test_similar_never_returns_seed_or_its_duplicate(built, music, capsys):
    seed = str(music / "a" / "low_chord.flac")
    found = run_json(capsys, "similar", seed, "--library", str(built), "-k", "10", "--json")
    paths = [r["path"] for r in found]
    assert seed not in paths and str(music / "dupes" / "low_chord_copy.mp3") not in paths
    assert len(found) == 5
    assert {"id", "path", "artist", "title", "score", "rank"} <= set(found[0])
    scores = [r["score"] for r in found]
    assert scores == sorted(scores, reverse=True)
    # the other chord sounds more like a chord than clicks or noise do
    assert found[0]["title"] == "Mid Chord"


def test_similar_to_an_outside_file(built, music, tmp_path, capsys):
    outside = tmp_path / "excerpt.wav"
    synth.write(outside, render(("tone", 1760), seconds=4.0), RATE)
    found = run_json(capsys, "similar", str(outside), "--library", str(built), "-k", "3", "--json")
    assert found[0]["title"] == "High Tone"
    with Library(built) as lib:
        assert lib.catalogue.count() == 7  # analysed, not added


def test_an_outside_file_is_measured_as_a_seed(built, tmp_path):
    """Its tempo and key, for --harmonic and --bpm-step from a seed that is not in the library."""
    import keyed_songs

    outside = tmp_path / "a_minor.flac"
    synth.write(outside, keyed_songs.render(128, 9, 0, seconds=20)[None, :], keyed_songs.RATE)
    with Library(built) as lib:
        measures = lib.resolve(str(outside)).measures
        assert (measures.key, measures.mode) == (9, 0)
        assert min(abs(measures.bpm - 128 * r) for r in (0.5, 1, 2)) < 0.04 * 128
        track = lib.catalogue.tracks()[0]  # a library track: its stored measures
        assert lib.resolve(track.path).measures == lib.catalogue.musical([track.id])[track.id]


def test_radio_and_path_from_an_outside_file(built, music, tmp_path, capsys):
    """A file not in the library seeds a radio and starts a path (listed with id None);
    its copies in the library are never played."""
    outside = tmp_path / "bought.flac"
    shutil.copy(music / "a" / "low_chord.flac", outside)
    copies = {str(music / "a" / "low_chord.flac"), str(music / "dupes" / "low_chord_copy.mp3")}
    radio = run_json(capsys, "radio", str(outside), "--length", "3", "--library", str(built), "--json")
    assert len(radio) == 3 and not copies & {t["path"] for t in radio}
    assert radio[0]["title"] == "Mid Chord"  # the other chord comes first
    end = str(music / "b" / "noise.ogg")
    journey = run_json(capsys, "path", str(outside), end, "--length", "4", "--library", str(built), "--json")
    assert [t["id"] is None for t in journey] == [True, False, False, False]
    assert journey[0]["path"] == str(outside) and journey[0]["title"] == "Low Chord"
    assert journey[-1]["path"] == end and not copies & {t["path"] for t in journey}
    with Library(built) as lib:
        assert lib.catalogue.count() == 7  # analysed, not added


def test_query_by_id_and_by_words(built, capsys):
    with Library(built) as lib:
        noise = next(t for t in lib.catalogue.tracks() if t.title == "Noise Wash")
    by_id = run_json(capsys, "similar", str(noise.id), "--library", str(built), "--json")
    by_words = run_json(capsys, "similar", "bob noise", "--library", str(built), "--json")
    assert by_id == by_words and noise.id not in [r["id"] for r in by_id]
    assert main(["similar", "no such song anywhere", "--library", str(built)]) == 2
    assert "'no such song anywhere': no such track id, file, or artist/title" in capsys.readouterr().err


def test_exclude_artist(built, music, capsys):
    seed = str(music / "a" / "high_tone.mp3")
    found = run_json(capsys, "similar", seed, "--library", str(built), "--exclude-artist", "--json")
    assert found and all(r["artist"] != "Ann" for r in found)


def test_tag_filter(built, music, capsys):
    with Library(built) as lib:
        ids, probs = lib.tag_scores("electronic")
        threshold = float(np.median(probs))
        expected = set(ids[probs >= threshold].tolist())
    seed = str(music / "b" / "noise.ogg")
    found = run_json(capsys, "similar", seed, "--library", str(built), "--tag", "Electronic",
                     "--min-prob", str(threshold), "--json")
    assert {r["id"] for r in found} <= expected and found
    # a file genre counts as a tag too
    found = run_json(capsys, "similar", seed, "--library", str(built), "--tag", "ambient", "--min-prob", "1", "--json")
    assert {r["title"] for r in found} <= {"Low Chord", "Mid Chord"} and found
    assert main(["similar", seed, "--library", str(built), "--tag", "xyzzy"]) == 2
    assert "unknown tag 'xyzzy'; the model's tags are: rock, pop, alternative" in capsys.readouterr().err
    assert main(["search", "--library", str(built), "--tag", "jaz"]) == 2
    assert "unknown tag 'jaz' (did you mean 'jazz'?); the model's tags are: rock" in capsys.readouterr().err


def test_a_number_is_an_id_and_a_missing_file_is_named(built, capsys, tmp_path):
    assert main(["similar", "424242", "--library", str(built)]) == 2
    assert f"no track has id 424242 in {built}" in capsys.readouterr().err
    missing = tmp_path / "nope.mp3"
    assert main(["similar", str(missing), "--library", str(built)]) == 2
    assert f"{missing}: no such file, and no track of {built} matches these words" in capsys.readouterr().err


def test_tags_and_search_by_tag(built, music, capsys):
    shown = run_json(capsys, "tags", str(music / "b" / "noise.ogg"), "--library", str(built), "--json", "--top", "50")
    probs = [t["probability"] for t in shown["tags"]]
    assert len(probs) == 50 and probs == sorted(probs, reverse=True)
    ranked = run_json(capsys, "search", "--tag", "rock", "--library", str(built), "--json")
    assert len(ranked) == 7
    scores = [r["score"] for r in ranked]
    assert scores == sorted(scores, reverse=True)
    with Library(built) as lib:
        ids, p = lib.tag_scores("rock")
        assert ranked[0]["id"] == int(ids[np.argmax(p)])


@pytest.mark.parametrize("suffix", [".npz", ".csv"])
def test_export(built, tmp_path, suffix, capsys):
    out = tmp_path / f"lib{suffix}"
    assert main(["export", "--library", str(built), "--out", str(out)]) == 0
    with Library(built) as lib:
        ids = np.array([t.id for t in lib.catalogue.tracks()])
        vectors = lib.vectors(ids)  # what similarity compares
        _, tags = lib.catalogue.arrays("tags", ids)
        if suffix == ".npz":
            data = np.load(out)
            np.testing.assert_array_equal(data["ids"], ids)
            np.testing.assert_array_equal(data["vectors"], vectors)
            np.testing.assert_array_equal(data["tags"], tags)
            assert "Noise Wash" in list(data["title"])
        else:
            import csv

            rows = list(csv.DictReader(open(out, encoding="utf-8")))
            assert [int(r["id"]) for r in rows] == ids.tolist()
            np.testing.assert_allclose([float(rows[0][f"v{i}"]) for i in range(400)], vectors[0], rtol=1e-5, atol=1e-6)
            rock = lib.catalogue.tag_names.index("rock")
            assert float(rows[0]["tag:rock"]) == pytest.approx(tags[0, rock], abs=1e-5)


def test_stats(built, capsys, backend):
    stats = run_json(capsys, "stats", "--library", str(built), "--json")
    assert stats["tracks"] == 7 and stats["model"] == "msd-mtt-musicnn"
    assert stats["index"] == {"sqlite": "exact", "postgresql": "pgvector"}[backend]
    assert stats["bytes_on_disk"] > 0 and stats["hours"] == pytest.approx(7 * SECONDS / 3600, abs=0.01)


def test_missing_library_is_a_clear_error(tmp_path, capsys):
    assert main(["stats", "--library", str(tmp_path / "none.sqlite")]) == 2
    assert "no library here; run 'soundalike index DIR' first" in capsys.readouterr().err


def test_library_from_environment(built, monkeypatch, capsys):
    monkeypatch.setenv("SOUNDALIKE_LIBRARY", str(built))
    assert run_json(capsys, "stats", "--json")["tracks"] == 7


def test_other_model_refused_on_existing_library(built, music, tmp_path, capsys, copy_library):
    library = copy_library(built, tmp_path, "lib")
    assert main(["index", str(music), "--library", str(library), "--model", "msd-musicnn"]) == 2
    assert ("was indexed with model 'msd-mtt-musicnn', not 'msd-musicnn'; use --model msd-mtt-musicnn, "
            "another --library, or --reanalyze") in capsys.readouterr().err


# --- the vector index ------------------------------------------------------------------

def test_stale_index_is_brought_up_to_date(built, music, tmp_path, copy_library):
    library = copy_library(built, tmp_path, "lib")
    with Library(library) as lib:
        old_ids = set(lib.refresh_index().ids.tolist())  # saved at the current generation
    # a later run adds a track and removes one (as if killed before saving the index)
    from soundalike.library import indexer

    with Library(library) as lib:
        extra = write_song(tmp_path, "x/extra.flac", "X", "Extra", None, ("tone", 660))
        st = extra.stat()
        todo = [indexer.FileState(str(extra), st.st_size, st.st_mtime_ns)]
        list(indexer.run(lib.catalogue, todo, model_name=lib.catalogue.model, workers=1))
        gone = next(iter(old_ids))
        lib.catalogue.remove([lib.catalogue.track(gone).path])
        current = set(lib.catalogue.ids().tolist())
    with Library(library) as lib:
        assert set(lib.index.ids.tolist()) == current != old_ids
        ids, vectors = lib.catalogue.arrays("vector")
        fresh = VectorIndex.build(ids, vectors, library_space(lib.catalogue))
        q = lib.space.project(vectors[0])
        np.testing.assert_array_equal(lib.index.search(q, 5)[1], fresh.search(q, 5)[1])


def test_index_build_reports_progress_by_chunk():
    added = []
    index = VectorIndex.build(np.arange(45_000), clustered(45_000, d=8), progress=added.append)
    assert added == [20_000, 40_000, 45_000] and len(index) == 45_000


def test_hnsw_index_follows_changes_without_rebuilding(built, tmp_path, monkeypatch, backend):
    """HNSW cannot delete: removed and re-analysed tracks leave dead labels that
    searches skip (saved with the index), until too many force a rebuild (faiss: a
    SQLite library's index)."""
    from soundalike.library import indexer, vectors

    if backend != "sqlite":
        pytest.skip("the faiss index of a library file")
    library = tmp_path / "lib.sqlite"
    shutil.copy(built, library)
    monkeypatch.setattr(vectors, "MAX_DEAD_FRACTION", 0.5)
    monkeypatch.setattr(vectors, "CENTRE_TOLERANCE", float("inf"))  # 7 tracks: every change moves the mean

    def hnsw():
        with Library(library, exact_limit=3) as lib:
            index = lib.index
            ids, vecs = lib.catalogue.arrays("vector")
            return index, ids, vecs

    def index_file(path):
        st = path.stat()
        with Library(library) as lib:
            list(indexer.run(lib.catalogue, [indexer.FileState(str(path), st.st_size, st.st_mtime_ns)],
                             model_name=lib.catalogue.model, workers=1))

    index, ids, _ = hnsw()
    assert index.kind == "hnsw" and len(index) == index.index.ntotal == len(ids) == 7
    index_file(write_song(tmp_path, "x/extra.flac", "X", "Extra", None, ("tone", 660)))
    index, ids, _ = hnsw()
    extra = int(ids.max())
    index_file(write_song(tmp_path, "x/extra.flac", "X", "Extra", None, ("clicks", 0)))  # re-analysed
    with Library(library) as lib:
        gone = int(ids[0])
        lib.catalogue.remove([lib.catalogue.track(gone).path])
    index, ids, vecs = hnsw()
    # nothing rebuilt: 7 + the first and the second version of extra, two of them dead
    assert index.index.ntotal == 9 and len(index) == 7 and len(index.dead) == 2
    assert sorted(index.ids.tolist()) == sorted(ids.tolist()) and gone not in ids
    fresh = VectorIndex.build(ids, vecs, index.space)  # the same centre: the one the index was built around
    new_vector = index.space.project(vecs[ids == extra][0])
    for reopened in (index, hnsw()[0]):  # also as loaded from disk
        scores, found = reopened.search(new_vector, 10)
        assert sorted(found.tolist()) == sorted(ids.tolist())  # each live track once, no dead label
        assert found[0] == extra and scores[0] == pytest.approx(1.0, abs=1e-5)
        np.testing.assert_allclose(scores, fresh.search(new_vector, 10)[0], atol=1e-5)
        _, only = reopened.search(new_vector, 10, allowed=[extra, gone, int(ids[1])])
        assert only.tolist() == [extra, int(ids[1])] or only.tolist() == [int(ids[1]), extra]
    # past the allowed share of dead labels the index is rebuilt from SQLite
    monkeypatch.setattr(vectors, "MAX_DEAD_FRACTION", 0.2)
    with Library(library) as lib:
        lib.catalogue.remove([lib.catalogue.track(int(ids[1])).path])
    index, ids, _ = hnsw()
    assert index.index.ntotal == len(index) == len(ids) == 6 and not len(index.dead)


def test_corrupt_index_file_is_rebuilt(built, tmp_path, copy_library, backend):
    if backend != "sqlite":
        pytest.skip("the faiss index of a library file")
    library = copy_library(built, tmp_path, "lib")
    Path(f"{library}.faiss").write_bytes(b"garbage")
    Path(f"{library}.faiss.json").write_text('{"generation": 999}')
    with Library(library) as lib:
        assert len(lib.index) == 7


def clustered(n, d=32, clusters=20, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, d))
    return (centres[rng.integers(0, clusters, n)] + 0.3 * rng.standard_normal((n, d))).astype(np.float32)


def test_hnsw_recall_and_filters():
    vectors = clustered(3000)
    ids = np.arange(10, 3010)
    exact = VectorIndex.build(ids, vectors)
    approx = VectorIndex.build(ids, vectors, exact_limit=1000)
    assert (exact.kind, approx.kind) == ("exact", "hnsw")
    queries = clustered(50, seed=1)
    recall = np.mean([len(set(exact.search(q, 10)[1]) & set(approx.search(q, 10)[1])) / 10 for q in queries])
    assert recall >= 0.95
    allowed = ids[::7]
    for index in (exact, approx):
        scores, found = index.search(queries[0], 10, allowed=allowed)
        assert len(found) == 10 and set(found) <= set(allowed.tolist())
        assert np.all(np.diff(scores) <= 1e-6)


# --- crash safety and parallel workers -------------------------------------------------

def test_tfidf_aggregation(built, music, tmp_path, capsys, copy_library):
    library = copy_library(built, tmp_path, "t")
    with Library(library) as lib:
        _, mean_vectors = lib.catalogue.arrays("vector")
    assert main(["index", str(music), "--library", str(library), "--aggregate", "tfidf"]) == 0
    with Library(library) as lib:
        assert lib.stats()["aggregate"] == "tfidf"
        ids, vectors = lib.catalogue.arrays("vector")
        patches = [p for _, p in lib.catalogue.iter_patches()]
        from soundalike.analysis import tfidf_vectors

        np.testing.assert_allclose(vectors, np.stack(tfidf_vectors(patches)), rtol=1e-5, atol=1e-6)
        assert not np.allclose(vectors, mean_vectors)
        assert len(lib.index) == 7
    found = run_json(capsys, "similar", str(music / "a" / "low_chord.flac"), "--library", str(library), "--json")
    assert len(found) == 5
    # back to plain means
    assert main(["index", str(music), "--library", str(library), "--aggregate", "mean"]) == 0
    with Library(library) as lib:
        np.testing.assert_allclose(lib.catalogue.arrays("vector")[1], mean_vectors, atol=1e-2)


def test_kill_minus_9_loses_nothing_committed(tmp_path):
    root = tmp_path / "m"
    for i in range(10):
        write_song(root, f"s{i:02d}.flac", "K", f"Song {i}", None, ("chord", i))
    library = tmp_path / "k.sqlite"
    cmd = [str(Path(sys.executable).parent / "soundalike"), "index", str(root), "--library", str(library),
           "--workers", "1", "--threads", "1"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    count = 0
    while time.time() < deadline:
        if library.exists():
            try:
                count = sqlite3.connect(library).execute("SELECT COUNT(*) FROM tracks").fetchone()[0]
            except sqlite3.OperationalError:
                count = 0
            if count >= 2:
                break
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert 2 <= count < 10, "the indexer finished before it could be killed"
    db = sqlite3.connect(library)
    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    committed = db.execute("SELECT COUNT(*) FROM tracks").fetchone()[0]
    assert committed >= count
    db.close()
    assert subprocess.run(cmd, capture_output=True, timeout=300).returncode == 0
    with Library(library) as lib:
        titles = sorted(t.title for t in lib.catalogue.tracks())
        assert titles == sorted(f"Song {i}" for i in range(10))
        assert len(lib.index) == 10


def test_worker_processes_give_the_same_vectors(music, built, tmp_path, capsys):
    library = tmp_path / "w.sqlite"
    assert main(["index", str(music / "a"), str(music / "b"), "--library", str(library), "--workers", "2"]) == 0
    with Library(library) as lib, Library(built) as ref:
        for track in lib.catalogue.tracks():
            other = ref.catalogue.track_by_path(track.path)
            np.testing.assert_allclose(lib.catalogue.arrays("vector", [track.id])[1],
                                       ref.catalogue.arrays("vector", [other.id])[1], atol=1e-4)


CRASHER = """
import os
import soundalike.library.indexer as indexer

_analyse = indexer.analyse_file


def analyse_file(f, model, excerpt):
    if "crash_me" in f.path:
        os._exit(3)  # the worker process dies, as on a decoder segfault
    return _analyse(f, model, excerpt)


indexer.analyse_file = analyse_file
"""


def test_a_worker_crash_fails_only_its_file(tmp_path, monkeypatch):
    """Spawned workers run a sitecustomize that kills the process on one file."""
    from soundalike.library import indexer

    hooks = tmp_path / "hooks"
    hooks.mkdir()
    (hooks / "sitecustomize.py").write_text(CRASHER)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(hooks), os.environ.get("PYTHONPATH", "")]))
    root = tmp_path / "m"
    for name in ("a", "b", "crash_me", "c", "d"):
        write_song(root, f"{name}.flac", "W", name, None, ("tone", 200 + 50 * len(name)))
    with Library(tmp_path / "c.sqlite", create=True) as lib:
        todo = indexer.plan(lib.catalogue, [root]).todo
        outcomes = {Path(o.path).stem: o.reason for o in
                    indexer.run(lib.catalogue, todo, model_name="msd-musicnn", workers=2)}
        assert outcomes == {"a": None, "b": None, "c": None, "d": None,
                            "crash_me": "the analysis process crashed on this file"}
        assert sorted(t.title for t in lib.catalogue.tracks()) == ["a", "b", "c", "d"]


def test_excerpt_indexing(music, tmp_path, capsys):
    root = tmp_path / "long"
    write_song(root, "long.flac", "L", "Long", None, ("chord", 9))
    shutil.copy(root / "long.flac", root / "copy.flac")
    library = tmp_path / "e.sqlite"
    assert main(["index", str(root), "--library", str(library), "--workers", "1", "--excerpt", "1"]) == 0
    with Library(library) as lib:
        t = lib.catalogue.tracks()[0]
        patches, starts = lib.catalogue.patches(t.id)
        assert len(patches) == 1
        assert starts[0] == pytest.approx(SECONDS / 2 - 1.504 + 0.016, abs=0.01)


def test_asking_for_more_patches_reanalyses_and_fewer_keeps(tmp_path, capsys):
    root = tmp_path / "long"
    write_song(root, "long.flac", "L", "Long", None, ("chord", 9))
    library = tmp_path / "e.sqlite"

    def index(excerpt, summary):
        capsys.readouterr()
        assert main(["index", str(root), "--library", str(library), "--workers", "1", "--excerpt", excerpt]) == 0
        assert summary in capsys.readouterr().out
        with Library(library) as lib:
            return len(lib.catalogue.patches(lib.catalogue.tracks()[0].id)[0])

    assert index("1", "indexed 1, unchanged 0") == 1
    assert index("1", "indexed 0, unchanged 1") == 1
    assert index("0", "indexed 1, unchanged 0") == 2  # every patch of 7 s
    assert index("1", "indexed 0, unchanged 1") == 2  # the fuller analysis is kept
