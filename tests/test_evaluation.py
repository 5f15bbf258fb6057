"""Evaluation metrics (hand-computed goldens), datasets, and an end-to-end run."""

import json

import numpy as np
import pytest

import synth
from soundalike import ParameterError
from soundalike.cli import main
from soundalike.evaluation import Variant, collect, evaluate, item_vectors, Features
from soundalike.evaluation.metrics import bootstrap_intervals, probe_accuracy, retrieval, tag_auc
from soundalike.library.indexer import DEFAULT_EXCERPT

# items on the unit circle: a1 a2 b1 b2 x at 0, 10, 80, 90 and 47 degrees
ANGLES = np.deg2rad([0, 10, 80, 90, 47])
VECTORS = np.stack([np.cos(ANGLES), np.sin(ANGLES)], axis=1)


def test_retrieval_golden():
    labels = ["a", "a", "b", "b", "a"]
    r = retrieval(VECTORS, labels, groups=range(5), ks=(1, 2))
    # rankings (angular distance): a1: a2 10, x 47, b1 80, b2 90 | a2: a1 10, x 37, b1 70, b2 80
    # b1: b2 10, x 33, a2 70, a1 80 | b2: b1 10, x 43, a2 80, a1 90 | x: b1 33, a2 37, b2 43, a1 47
    assert r.queries == 5
    assert r.precision_at[1] == pytest.approx(4 / 5)
    assert r.precision_at[2] == pytest.approx((1 + 1 + 0.5 + 0.5 + 0.5) / 5)
    # AP: a1 1, a2 1, b1 1, b2 1; x: a2 at rank 2, a1 at rank 4 -> (1/2 + 2/4) / 2
    assert r.mean_average_precision == pytest.approx((4 + 0.5) / 5)
    assert r.nn_accuracy == pytest.approx(0.8)
    assert r.per_label["a"][0] == 3 and r.per_label["a"][2] == pytest.approx(2.5 / 3)
    assert r.per_label["b"] == (2, {1: 1.0, 2: 0.5}, 1.0)


def test_bootstrap_intervals_bracket_each_figure_and_repeat():
    r = retrieval(VECTORS, ["a", "a", "b", "b", "a"], groups=range(5), ks=(1,))
    np.testing.assert_array_equal(r.per_query["P@1"], [1, 1, 1, 1, 0])  # x's nearest is b1: a miss
    assert r.figures() == pytest.approx({"P@1": 0.8, "mAP": 4.5 / 5, "1-NN": 0.8})
    intervals = bootstrap_intervals(r, samples=500)
    assert intervals == bootstrap_intervals(r, samples=500)  # seeded: the same every run
    for name, (low, high) in intervals.items():
        assert low <= r.figures()[name] <= high
    assert intervals["P@1"][0] < 0.8 < intervals["P@1"][1]
    perfect = retrieval(VECTORS[:4], ["a", "a", "b", "b"], groups=range(4), ks=(1,))
    assert bootstrap_intervals(perfect)["P@1"] == (1.0, 1.0)


def test_items_of_the_query_group_never_count():
    """Two excerpts of each of two tracks: excerpts of one track are identical vectors.
    Without groups they find each other (perfect scores); with groups they cannot."""
    vectors = np.array([[1, 0], [1, 0], [0.6, 0.8], [0.6, 0.8], [0, 1], [0, 1]], float)
    labels = ["x", "x", "x", "x", "y", "y"]
    ungrouped = retrieval(vectors, labels, groups=range(6), ks=(1,))
    grouped = retrieval(vectors, labels, groups=["t1", "t1", "t2", "t2", "t3", "t3"], ks=(1,))
    assert ungrouped.precision_at[1] == 1.0
    # t3's items have no relevant item outside their group: skipped; t1 finds t2 (x, a
    # hit) but t2's nearest outside its group is t3 (cos 0.8, y): a miss
    assert grouped.queries == 4 and grouped.precision_at[1] == 0.5
    labels = ["x", "x", "y", "y", "x", "x"]
    grouped = retrieval(vectors, labels, groups=["t1", "t1", "t2", "t2", "t3", "t3"], ks=(1,))
    # t1's nearest other-group item is t2 (label y): a miss now, a hit without groups
    assert grouped.precision_at[1] == pytest.approx(0.0)


def test_multilabel_relevance_is_any_shared_label():
    labels = [frozenset({"rock", "guitar"}), frozenset({"guitar"}), frozenset({"piano"}), frozenset({"piano", "rock"})]
    r = retrieval(VECTORS[:4], labels, groups=range(4), ks=(1,))
    # a1 -> a2 (shares guitar) hit; a2 -> a1 hit; b1 -> b2 (shares piano) hit; b2 -> b1 hit
    assert r.precision_at[1] == 1.0 and set(r.per_label) == {"rock", "guitar", "piano"}


def test_probe_separates_clusters_by_group():
    rng = np.random.default_rng(0)
    centres = np.array([[5, 0, 0], [0, 5, 0], [0, 0, 5]])
    labels = np.repeat(["a", "b", "c"], 20)
    vectors = centres[np.repeat([0, 1, 2], 20)] + rng.standard_normal((60, 3))
    groups = np.arange(60) // 2  # pairs of excerpts of one track
    assert probe_accuracy(vectors, labels, groups) == 1.0
    noise = rng.standard_normal((60, 3))
    assert probe_accuracy(noise, labels, groups) < 0.6


def test_tag_auc():
    truth = np.array([[1, 0], [0, 1], [1, 1], [0, 0]], float)
    assert tag_auc(truth * 0.9 + 0.05, truth) == (1.0, 1.0)
    roc, pr = tag_auc(1 - truth, truth)
    assert roc == 0.0 and pr < 0.6


def test_aggregations():
    f = [Features(np.array([[1.0, 0.0], [3.0, 2.0]]))]
    np.testing.assert_allclose(item_vectors(f, "mean"), [[2.0, 1.0]])
    np.testing.assert_allclose(item_vectors(f, "meanstd"), [[2.0, 1.0, 1.0, 1.0]])
    with pytest.raises(ParameterError, match="aggregate must be one of mean, meanstd, tfidf, got 'max'"):
        item_vectors(f, "max")


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """Two genres of synthesized music, three files each: chords and noise bursts."""
    root = tmp_path_factory.mktemp("genres")
    for i in range(3):
        (root / "chords").mkdir(exist_ok=True)
        (root / "noise").mkdir(exist_ok=True)
        synth.write(root / "chords" / f"chords.{i:05d}.wav", synth.chord(7.0, 16_000, seed=i, root=200 + 40 * i), 16_000)
        rng = np.random.default_rng(i)
        burst = (0.3 * rng.standard_normal(7 * 16_000) * (np.arange(7 * 16_000) % 8000 < 2000)).astype(np.float32)
        synth.write(root / "noise" / f"noise.{i:05d}.wav", burst[None, :], 16_000)
    return root


def test_collect_labels_from_folder_filename_and_csv(dataset, tmp_path):
    by_folder = collect(dataset, "folder")
    by_name = collect(dataset, "filename")
    assert [i.labels for i in by_folder] == [i.labels for i in by_name]
    assert sorted(next(iter(i.labels)) for i in by_folder) == ["chords"] * 3 + ["noise"] * 3
    csv = tmp_path / "labels.csv"
    csv.write_text("path,label,group\nchords/chords.00000.wav,tonal;calm,t1\nnoise/noise.00001.wav,noisy,t2\n")
    items = collect(dataset, str(csv))
    assert items[0].labels == {"tonal", "calm"} and items[0].group == "t1"
    with pytest.raises(ParameterError, match="labels must be 'folder', 'filename' or a CSV file, got 'nope'"):
        collect(dataset, "nope")


def test_evaluate_end_to_end(dataset):
    items = collect(dataset, "folder")
    rows = evaluate(items, ["descriptors", "msd-musicnn"], [Variant("mean"), Variant("meanstd")], ks=(1, 2))
    assert [(r.embedder, r.variant.aggregate) for r in rows] == [
        ("descriptors", "mean"), ("descriptors", "meanstd"), ("msd-musicnn", "mean"), ("msd-musicnn", "meanstd")]
    for row in rows:  # chords and noise bursts are easy to tell apart
        assert row.retrieval.nn_accuracy == 1.0 and row.retrieval.queries == 6
        assert row.tag_auc is None


def test_evaluate_command_writes_markdown_and_json(dataset, tmp_path, capsys):
    md, js = tmp_path / "r.md", tmp_path / "r.json"
    args = [str(dataset), "--labels", "folder", "--models", "msd-musicnn,random-musicnn", "--k", "1,2"]
    assert main(["evaluate", *args, "--excerpt", "0", "--out", str(md)]) == 0
    text = md.read_text()
    assert "| embedder | variant | P@1 | P@2 | mAP | 1-NN acc | probe acc |" in text
    assert "| random-musicnn | mean, full track |" in text
    assert main(["evaluate", *args, "--out", str(js)]) == 0  # by default, the library's excerpt
    doc = json.loads(js.read_text())
    assert doc["items"] == 6 and {r["embedder"] for r in doc["results"]} == {"msd-musicnn", "random-musicnn"}
    assert [r["excerpt"] for r in doc["results"]] == [DEFAULT_EXCERPT] * 2
    low, high = doc["results"][0]["intervals_95"]["mAP"]
    assert low <= doc["results"][0]["map"] <= high and doc["results"][0]["centred"] is True
    assert doc["results"][0]["per_label"]["chords"]["queries"] == 3


def test_tag_auc_when_labels_are_the_models_tags(dataset, tmp_path):
    csv = tmp_path / "tags.csv"
    rows = ["path,label"]
    for item in collect(dataset, "folder"):
        rows.append(f"{item.path},{'ambient;instrumental' if 'chords' in item.path else 'electronic'}")
    csv.write_text("\n".join(rows) + "\n")
    items = collect(dataset, str(csv))
    tags_row, = evaluate(items, ["msd-musicnn:tags"], [Variant("mean")], ks=(1,))
    roc, pr = tags_row.tag_auc
    assert 0 <= roc <= 1 and 0 < pr <= 1
    assert np.isnan(tags_row.probe)  # multi-label: no single-label probe


def test_descriptors_index_a_library(tmp_path, capsys):
    from soundalike.library import Library

    root = tmp_path / "m"
    root.mkdir()
    for i, f in enumerate((220, 440, 880)):
        synth.write(root / f"t{i}.wav", synth.tone(f, 7.0, 16_000), 16_000)
    library = tmp_path / "d.sqlite"
    assert main(["index", str(root), "--library", str(library), "--model", "descriptors", "--workers", "1"]) == 0
    with Library(library) as lib:
        ids, vectors = lib.catalogue.arrays("vector")
        assert vectors.shape == (3, 77) and lib.catalogue.arrays("tags")[1].shape == (3, 0)
        # standardized: no feature dwarfs the others as Hz would
        assert np.abs(vectors).max() < 100
    capsys.readouterr()
    assert main(["similar", str(root / "t0.wav"), "--library", str(library), "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)) == 2


def test_first_descriptor_computation_waits_for_the_shared_numba_lock():
    """Processes compiling librosa's numba kernels at once can crash (numba issue 10128),
    so a process compiles only while it holds the lock shared by all processes."""
    import subprocess
    import sys
    import time

    from filelock import FileLock

    from soundalike.descriptors import NUMBA_LOCK

    code = (
        "import librosa, numpy as np; from soundalike.descriptors import descriptors; print('ready', flush=True);"
        "descriptors(np.zeros(16000, np.float32))"
    )
    with FileLock(NUMBA_LOCK):
        child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
        assert child.stdout.readline() == "ready\n"
        time.sleep(5)  # the computation alone takes under 2 s
        assert child.poll() is None, "computed descriptors without the lock"
    assert child.wait(timeout=120) == 0
