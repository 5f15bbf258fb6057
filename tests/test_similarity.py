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
from soundalike.analysis import Space
from soundalike.audio import TrackMetadata
from soundalike.cli import main
from soundalike.evaluation import Variant, collect, embedder, search_vectors
from soundalike.library import Library, indexer, vectors
from soundalike.library.catalogue import ModelDescription, TrackRecord
from soundalike.models import FusedModel, load_model

from songs import SONGS, make_music, write_song


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
        np.testing.assert_allclose(a.space.centre, raw.mean(axis=0), rtol=1e-6, atol=1e-9)
        np.testing.assert_allclose(b.space.centre, a.space.centre, rtol=1e-6, atol=1e-9)


def test_the_mean_follows_removals_and_reanalysed_files(tmp_path):
    """``vector_sum`` is kept in the same transactions as the tracks."""
    lib = Library(tmp_path / "m.sqlite", create=True)
    lib.catalogue.bind_model(ModelDescription("test", (), (3,), (1.0,)))

    def put(name, vector):
        lib.catalogue.put(TrackRecord(f"/m/{name}", 1, 1, TrackMetadata(), 0, np.asarray(vector, np.float32),
                                      np.zeros(0, np.float32), np.zeros((1, 3), np.float32), np.zeros(1, np.float32)))

    put("a", [1, 0, 0])
    put("b", [0, 3, 0])
    put("c", [0, 0, 6])
    np.testing.assert_allclose(lib.catalogue.mean_vector(), [1 / 3, 1, 2])
    put("c", [0, 0, 3])  # re-analysed: replaces its old vector in the sum
    lib.catalogue.remove(["/m/a"])
    lib.catalogue.put_failure("/m/b", 1, 1, "now broken")
    put("d", [2, 2, 2])
    np.testing.assert_allclose(lib.catalogue.mean_vector(), [1, 1, 2.5])
    lib.catalogue.remove(["/m/c", "/m/d"])
    assert lib.catalogue.mean_vector() is None
    lib.close()


def test_hnsw_keeps_its_centre_until_the_mean_moves_beyond_the_tolerance(tmp_path, monkeypatch):
    lib = Library(tmp_path / "h.sqlite", create=True, exact_limit=10)
    lib.catalogue.bind_model(ModelDescription("test", (), (4,), (1.0,)))
    rng = np.random.default_rng(0)

    def put(name, vector):
        lib.catalogue.put(TrackRecord(f"/m/{name}", 1, 1, TrackMetadata(), 0, np.asarray(vector, np.float32),
                                      np.zeros(0, np.float32), np.zeros((1, 4), np.float32), np.zeros(1, np.float32)))

    for i in range(40):
        put(f"t{i}", rng.standard_normal(4))
    built = lib.refresh_index()
    assert built.kind == "hnsw"
    put("near", built.space.centre)  # a track at the mean: the mean does not move
    updated = lib.refresh_index()
    assert updated.index.ntotal == 41 and np.array_equal(updated.space.centre, built.space.centre)
    for i in range(10):  # ten tracks far to one side move the mean well past the tolerance
        put(f"far{i}", [20, 0, 0, 0])
    rebuilt = lib.refresh_index()
    np.testing.assert_allclose(rebuilt.space.centre, lib.catalogue.mean_vector())
    assert len(rebuilt) == 51 and not len(rebuilt.dead)
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
        np.testing.assert_allclose(lib.space.centre, raw_before.astype(np.float64).mean(axis=0), rtol=1e-6)
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


def test_an_interrupted_reanalysis_never_mixes_models_and_resumes(old_library, music, capsys):
    with Library(old_library) as lib:
        todo = indexer.plan(lib.catalogue, [music], reanalyze=True).todo
        assert len(todo) == 7
        outcomes = indexer.run(lib.catalogue, todo, model_name="msd-mtt-musicnn", workers=1, reanalyze=True)
        next(outcomes), next(outcomes)  # killed after two files
        outcomes.close()
    with Library(old_library) as lib:  # the library still answers with its old model only
        assert lib.catalogue.model == "mtt-musicnn" and lib.catalogue.arrays("vector")[1].shape == (7, 200)
        assert len(lib.index) == 7 and lib.index.index.d == 200
        assert lib.stats()["reanalysis"] == {"model": "msd-mtt-musicnn", "left": 5}
    capsys.readouterr()
    assert main(["index", str(music), "--library", str(old_library), "--workers", "1"]) == 0
    assert "a re-analysis with msd-mtt-musicnn is under way (5 tracks left)" in capsys.readouterr().err
    # a file broken since its first analysis fails the re-analysis and leaves the library
    broken = music / "b" / "clicks.wav"
    kept = broken.read_bytes()
    broken.write_bytes(b"not audio any more")
    try:
        assert main(["index", str(music), "--library", str(old_library), "--workers", "1", "--reanalyze"]) == 1
    finally:
        broken.write_bytes(kept)
    out = capsys.readouterr().out
    assert "indexed 4, unchanged 2" in out and f"failed: {broken}" in out  # the two done are not redone
    with Library(old_library) as lib:
        assert lib.catalogue.model == "msd-mtt-musicnn" and lib.catalogue.arrays("vector")[1].shape == (6, 400)
        assert str(broken) in dict(lib.catalogue.failures())
        assert lib.stats()["reanalysis"] is None


def test_reanalysis_with_another_model_restarts_the_staging(old_library, music):
    with Library(old_library) as lib:
        todo = indexer.plan(lib.catalogue, [music], reanalyze=True).todo
        list(indexer.run(lib.catalogue, todo[:2], model_name="msd-musicnn", workers=1, reanalyze=True))
        assert len(lib.catalogue.staged_states()) == 2
        lib.catalogue.begin_staging(ModelDescription.of("msd-mtt-musicnn", load_model("msd-mtt-musicnn")))
        assert not lib.catalogue.staged_states()
        assert lib.catalogue.staged_model.name == "msd-mtt-musicnn"
