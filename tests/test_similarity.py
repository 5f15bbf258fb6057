"""The similarity space: the fused default model, centring on the library's own mean (and
keeping it right as the library changes), one code path for index and evaluate, and
libraries built with an earlier default."""

import json
import shutil
import sqlite3
from pathlib import Path

import numpy as np
import pytest
import torch

import synth
from soundalike import ModelError
from soundalike.analysis import CENTRE_PRIOR_TRACKS, Space, library_centre
from soundalike.audio import TrackMetadata
from soundalike.cli import main
from soundalike.evaluation import Variant, collect, embedder, search_vectors
from soundalike.library import Library, indexer, vectors
from soundalike.library.catalogue import LibraryError, ModelDescription, TrackRecord
from soundalike.models import FusedModel, load_model

from songs import RATE, make_music, render


# --- the fused model ------------------------------------------------------------------

def test_fused_model_is_its_members_side_by_side(msd_model, mtt_model):
    fused = load_model("msd-mtt-musicnn")
    y = torch.from_numpy(np.stack([synth.chord(3.1, 16_000, seed=s)[0, : fused.window.length] for s in (1, 2)]))
    with torch.inference_mode():
        out, msd, mtt = fused.features(y), msd_model.features(y), mtt_model.features(y)
        probs = fused.probabilities(out.logits).numpy()
        msd_p, mtt_p = msd_model.probabilities(msd.logits).numpy(), mtt_model.probabilities(mtt.logits).numpy()
    np.testing.assert_allclose(out.embedding.numpy(), np.concatenate([msd.embedding, mtt.embedding], 1), atol=1e-6)
    assert fused.embedding_blocks == (200, 200) and fused.block_weights == (0.6, 0.4)
    # every tag of both, MSD's first; the 8 both predict are the mean of the two
    assert len(fused.labels) == 92 and fused.labels[:50] == msd_model.labels
    for name in ("piano", "Hip-Hop", "rock"):
        column = probs[:, fused.labels.index(name)]
        own = [p[:, m.labels.index(name)] for p, m in ((msd_p, msd_model), (mtt_p, mtt_model)) if name in m.labels]
        np.testing.assert_allclose(column, np.mean(own, axis=0), atol=1e-6)


def test_fused_members_must_share_their_windows(msd_model):
    with pytest.raises(ModelError, match="fused models must cut tracks into the same windows"):
        FusedModel([msd_model, load_model("descriptors")], [0.5, 0.5])
    with pytest.raises(ModelError, match="a weight each"):
        FusedModel([msd_model, msd_model], [1.0])


# --- the space ------------------------------------------------------------------------

def test_space_centres_normalises_each_block_and_weights_it():
    space = Space((2, 1), (0.6, 0.8), centre=np.array([1.0, 1.0, 1.0]))
    # x - centre = (3, 4, -2): blocks (3, 4)/5 and (-1), weighted 0.6 and 0.8, then unit length
    expected = np.array([0.6 * 0.6, 0.6 * 0.8, -0.8]) / np.sqrt(0.6**2 + 0.8**2)
    np.testing.assert_allclose(space.project(np.array([4.0, 5.0, -1.0])), expected, atol=1e-6)
    np.testing.assert_allclose(space.project(np.array([[4.0, 5.0, -1.0]] * 2)), [expected] * 2, atol=1e-6)
    assert not space.project(np.ones(3)).any()  # the centre itself has no direction
    # without a centre and with one block it is plain cosine
    plain = Space((3,), (1.0,))
    np.testing.assert_allclose(plain.project(np.array([3.0, 0, 4])), [0.6, 0, 0.8])


# --- centring on the library, as it grows ------------------------------------------------

def neighbours(library: Path) -> dict[str, tuple[list[str], np.ndarray]]:
    """Every track's 5 nearest other tracks (by path) and their scores."""
    with Library(library) as lib:
        tracks = lib.catalogue.tracks()
        paths = {t.id: t.path for t in tracks}
        out = {}
        for t in tracks:
            scores, ids = lib.nearest(lib.vectors([t.id])[0], 6)
            keep = ids != t.id
            out[t.path] = ([paths[int(i)] for i in ids[keep][:5]], scores[keep][:5])
        return out


@pytest.fixture(scope="module")
def music(tmp_path_factory):
    return make_music(tmp_path_factory.mktemp("music"))


def test_adding_tracks_in_two_runs_gives_the_neighbours_of_one(music, tmp_path):
    """The centre is the library's mean: after a second run it is the mean of all, and
    the index is rebuilt around it, so the neighbours are those of a single run."""
    once, twice = tmp_path / "once.sqlite", tmp_path / "twice.sqlite"
    assert main(["index", str(music), "--library", str(once), "--workers", "1"]) == 0
    assert main(["index", str(music / "a"), str(music / "b"), "--library", str(twice), "--workers", "1"]) == 0
    first = neighbours(twice)
    assert main(["index", str(music), "--library", str(twice), "--workers", "1"]) == 0
    expected, got = neighbours(once), neighbours(twice)
    assert got.keys() == expected.keys() and len(got) == 7
    for path, (paths, scores) in expected.items():
        assert got[path][0] == paths, path
        np.testing.assert_allclose(got[path][1], scores, atol=1e-5)
    # and the centre really moved: the first run's neighbours scored differently
    a_track = str(music / "a" / "low_chord.flac")
    assert not np.allclose(first[a_track][1][:2], expected[a_track][1][:2], atol=1e-3)
    with Library(once) as a, Library(twice) as b:
        raw = a.catalogue.arrays("vector")[1].astype(np.float64)
        np.testing.assert_allclose(a.space.centre, raw.sum(axis=0) / (7 + CENTRE_PRIOR_TRACKS), rtol=1e-6, atol=1e-9)
        np.testing.assert_allclose(b.space.centre, a.space.centre, rtol=1e-6, atol=1e-9)


def test_a_tiny_library_is_barely_centred(tmp_path):
    """Centred on their own mean, two tracks would point in opposite directions and a copy
    of one would score -1 against it: the centre shrinks toward 0 for small libraries."""
    lib = Library(tmp_path / "two.sqlite", create=True)
    lib.catalogue.bind_model(ModelDescription("test", (), (3,), (1.0,)))
    for name, vector in (("a", [1.0, 0.2, 0.0]), ("a-copy", [1.0, 0.21, 0.0])):
        lib.catalogue.put(TrackRecord(f"/m/{name}", 1, 1, TrackMetadata(duration=100.0), 0,
                                      np.asarray(vector, np.float32), np.zeros(0, np.float32),
                                      np.zeros((1, 3), np.float32), np.zeros(1, np.float32)))
    np.testing.assert_allclose(lib.space.centre, [2 / 12, 0.41 / 12, 0])
    a, copy = lib.vectors([1, 2])
    assert a @ copy > 0.99
    lib.close()


def record(name: str, vector, dim: int = 3) -> TrackRecord:
    return TrackRecord(f"/m/{name}", 1, 1, TrackMetadata(), 0, np.asarray(vector, np.float32), np.zeros(0, np.float32),
                       np.zeros((1, dim), np.float32), np.zeros(1, np.float32))


def test_the_sum_follows_every_write(tmp_path):
    """``vector_sum`` is kept in the same transactions as the tracks."""
    lib = Library(tmp_path / "m.sqlite", create=True)
    lib.catalogue.bind_model(ModelDescription("test", (), (3,), (1.0,)))

    def put(name, vector):
        lib.catalogue.put(record(name, vector))

    put("a", [1, 0, 0])
    put("b", [0, 3, 0])
    put("c", [0, 0, 6])
    np.testing.assert_allclose(lib.catalogue.vector_sum()[0], [1, 3, 6])
    put("c", [0, 0, 3])  # re-analysed: replaces its old vector in the sum
    lib.catalogue.remove(["/m/a"])
    lib.catalogue.put_failure("/m/b", 1, 1, "now broken")
    put("d", [2, 2, 2])
    np.testing.assert_allclose(lib.catalogue.vector_sum()[0], [2, 2, 5])
    lib.catalogue.set_vectors({t.id: np.ones(3) for t in lib.catalogue.tracks()})  # re-aggregated
    np.testing.assert_allclose(lib.catalogue.vector_sum()[0], [2, 2, 2])
    # a switch to a re-analysis: the sum of the new vectors
    lib.catalogue.begin_staging(ModelDescription("other", (), (2,), (1.0,)))
    for name in ("c", "d"):
        lib.catalogue.stage(record(name, [5, 7], dim=2), "other")
    lib.catalogue.finish_staging()
    assert lib.catalogue.model == "other" and lib.catalogue.vector_sum()[1] == 2
    np.testing.assert_allclose(lib.catalogue.vector_sum()[0], [10, 14])
    lib.catalogue.remove(["/m/c", "/m/d"])
    assert lib.catalogue.vector_sum() == (None, 0)
    lib.close()


def test_writes_of_another_model_are_refused(tmp_path):
    """Another process may switch the library (or drop a re-analysis) while a run still
    analyses with the old model: its tracks are refused, never mixed in."""
    lib = Library(tmp_path / "w.sqlite", create=True)
    lib.catalogue.bind_model(ModelDescription("test", (), (3,), (1.0,)))
    with pytest.raises(LibraryError, match="is analysed with test .*, not with old; run the command again"):
        lib.catalogue.put(record("a", [1, 2, 3]), model="old")
    with pytest.raises(LibraryError, match="is not being re-analysed .*, not with new"):
        lib.catalogue.stage(record("a", [1, 2, 3]), "new")
    lib.catalogue.begin_staging(ModelDescription("new", (), (3,), (1.0,)))
    with pytest.raises(LibraryError, match="is being re-analysed with new .*, not with newer"):
        lib.catalogue.stage_failure("/m/a", 1, 1, "broken", "newer")
    assert lib.catalogue.count() == 0 and not lib.catalogue.staged_states()
    lib.close()


@pytest.mark.parametrize("kind", ["hnsw", "exact"])
def test_an_index_keeps_its_centre_until_the_mean_moves_beyond_the_tolerance(tmp_path, monkeypatch, kind):
    """In place while the mean barely moved, rebuilt around the new mean beyond; an exact
    index is also re-centred exactly when asked (as ``soundalike index`` does at its end)."""
    lib = Library(tmp_path / "h.sqlite", create=True, exact_limit=10 if kind == "hnsw" else 1000)
    lib.catalogue.bind_model(ModelDescription("test", (), (4,), (1.0,)))
    rng = np.random.default_rng(0)
    builds = []
    build = vectors.VectorIndex.build.__func__
    monkeypatch.setattr(vectors.VectorIndex, "build",
                        classmethod(lambda cls, *a, **k: builds.append(len(a[0])) or build(cls, *a, **k)))
    for i in range(40):
        lib.catalogue.put(record(f"t{i}", rng.standard_normal(4), dim=4))
    built = lib.index
    assert built.kind == kind and builds == [40]
    # a track by the centre moves it by a hair (0.5 / 51, against a spread of about 2)
    lib.catalogue.put(record("near", built.space.centre + [0.5, 0, 0, 0], dim=4))
    updated = lib.index
    assert builds == [40] and len(updated) == 41  # updated in place, around its old centre
    assert np.array_equal(updated.space.centre, built.space.centre)
    if kind == "exact":
        assert len(lib.refresh_index(recentre=True)) == 41 and builds == [40, 41]
    for i in range(10):  # ten tracks far to one side move the mean well past the tolerance
        lib.catalogue.put(record(f"far{i}", [20, 0, 0, 0], dim=4))
    rebuilt = lib.index
    assert builds[-1] == 51 and len(rebuilt) == 51 and not len(rebuilt.dead)
    np.testing.assert_allclose(rebuilt.space.centre, library_centre(*lib.catalogue.vector_sum()))
    lib.close()


# --- one code path for index and evaluate ----------------------------------------------

@pytest.mark.parametrize("excerpt", [10, 1])
def test_evaluate_compares_the_vectors_the_library_compares(music, tmp_path, excerpt):
    library = tmp_path / "e.sqlite"
    assert main(["index", str(music), "--library", str(library), "--workers", "1", "--excerpt", str(excerpt)]) == 0
    items = collect(music, "folder")
    features_of = embedder("msd-mtt-musicnn")
    evaluated = search_vectors([features_of(i.path, Variant(excerpt=excerpt)) for i in items],
                               Variant(excerpt=excerpt), features_of.space)
    with Library(library) as lib:
        indexed = lib.vectors([lib.catalogue.track_by_path(i.path).id for i in items])
        assert {r[0] for r in lib.catalogue.db.execute("SELECT excerpt FROM tracks")} == {0 if excerpt > 2 else 1}
    np.testing.assert_allclose(evaluated, indexed, atol=2e-6)


# --- libraries built with an earlier default ---------------------------------------------

def as_version_1(library: Path) -> None:
    """Turn a library into what soundalike before 0.2 wrote: no staged table, no running
    sum or blocks in meta, schema version 1, an index state without a space."""
    db = sqlite3.connect(library)
    db.executescript("DROP TABLE staged; UPDATE meta SET value = '1' WHERE key = 'schema_version';"
                     "DELETE FROM meta WHERE key IN ('blocks', 'block_weights', 'vector_sum', 'model_choice');")
    db.commit()
    generation, model = (db.execute("SELECT value FROM meta WHERE key = ?", (k,)).fetchone()[0]
                         for k in ("generation", "model"))
    db.close()
    state = Path(f"{library}.faiss.json")
    state.write_text(json.dumps({"generation": int(generation), "model": model, "kind": "exact", "count": 7,
                                 "dead": []}))


@pytest.fixture
def old_library(music, tmp_path):
    library = tmp_path / "old.sqlite"
    assert main(["index", str(music), "--library", str(library), "--workers", "1", "--model", "mtt-musicnn"]) == 0
    as_version_1(library)
    return library


def test_an_old_default_library_keeps_working_and_says_how_to_reanalyse(old_library, music, capsys):
    with Library(old_library) as lib:
        ids_before = {t.path: t.id for t in lib.catalogue.tracks()}
        raw_before = lib.catalogue.arrays("vector")[1]
    capsys.readouterr()
    assert main(["index", str(music), "--library", str(old_library), "--workers", "1"]) == 0
    out = capsys.readouterr()
    assert "indexed 0, unchanged 7" in out.out
    assert ("this library was analysed with mtt-musicnn, the default of soundalike before 0.2; the default is now "
            "msd-mtt-musicnn") in out.err and "'soundalike index --reanalyze'" in out.err
    with Library(old_library) as lib:
        assert lib.catalogue.model == "mtt-musicnn" and lib.space.blocks == (200,)
        np.testing.assert_allclose(lib.space.centre, library_centre(raw_before.astype(np.float64).sum(axis=0), 7),
                                   rtol=1e-6)
    seed = str(music / "a" / "low_chord.flac")
    assert main(["similar", seed, "--library", str(old_library), "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)) == 5
    # one option re-analyses it all, keeping every track's id
    assert main(["index", "--reanalyze", "--library", str(old_library), "--workers", "1"]) == 0
    assert "the library now uses msd-mtt-musicnn" in capsys.readouterr().out
    with Library(old_library) as lib:
        assert {t.path: t.id for t in lib.catalogue.tracks()} == ids_before
        assert lib.catalogue.model == "msd-mtt-musicnn" and lib.catalogue.arrays("vector")[1].shape == (7, 400)
        assert lib.index.index.d == 400 and len(lib.index) == 7 and lib.catalogue.staged_model is None
    assert main(["index", str(music), "--library", str(old_library), "--workers", "1"]) == 0
    assert "note:" not in capsys.readouterr().err  # nothing more to say


def reanalyse_partly(library: Path, model: str, files: int) -> None:
    """A re-analysis with ``model`` killed after ``files`` files."""
    with Library(library) as lib:
        lib.catalogue.begin_staging(indexer.describe(model))
        todo = indexer.plan(lib.catalogue, [], reanalyze=True).todo
        outcomes = indexer.run(lib.catalogue, todo, model_name=model, workers=1, reanalyze=True)
        for _ in range(files):
            next(outcomes)
        outcomes.close()


def test_an_interrupted_reanalysis_never_mixes_models_and_resumes(old_library, music, capsys):
    broken = music / "a" / "high_tone.mp3"  # the first file a re-analysis takes
    kept = broken.read_bytes()
    broken.write_bytes(b"not audio any more")
    try:
        reanalyse_partly(old_library, "msd-mtt-musicnn", 2)
        with Library(old_library) as lib:  # the library still answers with its old model only
            assert lib.catalogue.model == "mtt-musicnn" and lib.catalogue.arrays("vector")[1].shape == (7, 200)
            assert len(lib.index) == 7 and lib.index.index.d == 200
            assert lib.stats()["reanalysis"] == {"model": "msd-mtt-musicnn", "left": 5}
        capsys.readouterr()
        assert main(["index", str(music / "b"), "--library", str(old_library), "--workers", "1"]) == 0
        assert "a re-analysis with msd-mtt-musicnn is under way (5 tracks left)" in capsys.readouterr().err
        # continued: the two done are not redone; the file that failed in the first run
        # leaves the library at the switch, and is reported now
        assert main(["index", "--reanalyze", "--library", str(old_library), "--workers", "1"]) == 1
    finally:
        broken.write_bytes(kept)
    out = capsys.readouterr().out
    assert "indexed 5, unchanged 2, removed 0, failed 1" in out and f"failed: {broken}: " in out
    assert "the library now uses msd-mtt-musicnn: every track re-analysed; 1 that failed left the library" in out
    with Library(old_library) as lib:
        assert lib.catalogue.model == "msd-mtt-musicnn" and lib.catalogue.arrays("vector")[1].shape == (6, 400)
        assert str(broken) in dict(lib.catalogue.failures()) and lib.stats()["reanalysis"] is None
    # repaired since, the file comes back with the next run
    assert main(["index", str(music), "--library", str(old_library), "--workers", "1"]) == 0
    assert "indexed 1, unchanged 6" in capsys.readouterr().out


def test_another_model_restarts_a_reanalysis_and_none_continues_it(old_library, capsys):
    reanalyse_partly(old_library, "msd-musicnn", 2)
    capsys.readouterr()
    assert main(["index", "--reanalyze", "--library", str(old_library), "--workers", "1"]) == 0  # continues
    assert "indexed 5, unchanged 2" in capsys.readouterr().out
    with Library(old_library) as lib:
        assert lib.catalogue.model == "msd-musicnn"
    reanalyse_partly(old_library, "msd-mtt-musicnn", 2)
    assert main(["index", "--reanalyze", "--model", "mtt-musicnn", "--library", str(old_library),
                 "--workers", "1"]) == 0  # restarts: what msd-mtt-musicnn staged is dropped
    assert "indexed 7, unchanged 0" in capsys.readouterr().out
    with Library(old_library) as lib:
        assert lib.catalogue.model == "mtt-musicnn" and lib.catalogue.arrays("vector")[1].shape == (7, 200)


def test_a_reanalysis_never_drops_tracks_whose_files_are_out_of_reach(old_library, music, tmp_path, capsys):
    """A file not there (an unmounted disk) keeps the library on its old model until it
    is back, or removed on purpose."""
    away, parked = music / "c" / "low_tone.opus", tmp_path / "parked.opus"
    away.rename(parked)
    try:
        capsys.readouterr()
        assert main(["index", "--reanalyze", "--library", str(old_library), "--workers", "1"]) == 0
        out = capsys.readouterr().out
        assert ("the re-analysis with msd-mtt-musicnn is not complete: 1 tracks are left, 1 of them because their "
                f"files are not there (e.g. {away})") in out and "keeps using mtt-musicnn until then" in out
        with Library(old_library) as lib:
            assert lib.catalogue.model == "mtt-musicnn" and lib.catalogue.count() == 7
    finally:
        parked.rename(away)
    assert main(["index", "--reanalyze", "--library", str(old_library), "--workers", "1"]) == 0
    assert "indexed 1, unchanged 6" in capsys.readouterr().out
    with Library(old_library) as lib:
        assert lib.catalogue.model == "msd-mtt-musicnn" and lib.catalogue.count() == 7


def test_a_reanalysis_keeps_the_fuller_analysis(tmp_path, capsys):
    root = tmp_path / "m"
    root.mkdir()
    synth.write(root / "long.flac", render(("chord", 9), seconds=36.0), RATE)  # room for 10 spread patches
    library = tmp_path / "full.sqlite"
    assert main(["index", str(root), "--library", str(library), "--workers", "1", "--excerpt", "0",
                 "--model", "mtt-musicnn"]) == 0
    assert main(["index", "--reanalyze", "--library", str(library), "--workers", "1"]) == 0  # asks for 10
    with Library(library) as lib:
        assert lib.catalogue.model == "msd-mtt-musicnn"
        assert [r[0] for r in lib.catalogue.db.execute("SELECT excerpt FROM tracks")] == [0]
        assert len(lib.catalogue.patches(int(lib.catalogue.ids()[0]))[0]) == 12  # every patch of 36 s


def test_reanalyze_needs_a_library_with_tracks(tmp_path, capsys):
    assert main(["index", "--reanalyze", "--library", str(tmp_path / "new.sqlite")]) == 2
    assert "holds no tracks to re-analyse; index a folder first" in capsys.readouterr().err


def test_a_library_in_use_follows_a_switch(old_library, music):
    """A long-lived Library (the server's) sees another process switch the model."""
    from soundalike import recommend

    with Library(old_library) as serving:
        seed = serving.seed(serving.catalogue.track_by_path(str(music / "a" / "low_chord.flac")))
        assert len(recommend.similar(serving, seed)) == 5 and serving.model.name == "mtt-musicnn"
        assert main(["index", "--reanalyze", "--library", str(old_library), "--workers", "1"]) == 0
        seed = serving.seed(serving.catalogue.track_by_path(str(music / "a" / "low_chord.flac")))
        assert len(seed.vector) == 400 and len(recommend.similar(serving, seed, tag="piano", min_prob=0)) == 5
        assert len(serving.model.labels) == 92
