"""Training: every network family, checkpoints, resuming, reports, and using a trained model."""

import json
from pathlib import Path

import numpy as np
import pytest
import synth
import torch
from safetensors.torch import load_file

from soundalike import ModelError, ParameterError
from soundalike.cli import main
from soundalike.models import load_model
from soundalike.models.trained import ARCHITECTURES, ModelConfig, build, save
from soundalike.train import TrainConfig, report, train
from soundalike.train.trainer import CHECKPOINT_FILE, build_model

RATE = 16_000
TINY = {"spec-cnn": {"channels": 4, "blocks": 2, "seconds": 1.0, "embedding_dim": 16},
        "raw-cnn": {"channels": 8, "seconds": 1.0, "embedding_dim": 16},
        "short-chunk-resnet": {"channels": 4, "blocks": 3, "seconds": 1.0},
        "musicnn": {"timbral_filters": 8, "temporal_filters": 4, "midend_filters": 8, "dense_units": 16},
        "probe": {"embedder": "descriptors", "hidden": 8}}


@pytest.fixture(scope="module")
def two_pitches(tmp_path_factory) -> Path:
    """Low and high chords, eight 2 s tracks each, one folder per label."""
    root = tmp_path_factory.mktemp("pitches")
    for label, base in (("low", 110.0), ("high", 1760.0)):
        (root / label).mkdir()
        for i in range(8):
            synth.write(root / label / f"{i}.wav", synth.chord(2.0, RATE, seed=i, root=base * (1 + 0.03 * i)), RATE)
    return root


def _config(root, tmp_path, **kw) -> TrainConfig:
    options = dict(data=f"folders:{root}", model="spec-cnn", params=TINY["spec-cnn"], epochs=12, patience=12,
                   lr=3e-3, batch_size=8, cache=str(tmp_path / "cache"))
    return TrainConfig(**{**options, **kw})


@pytest.mark.parametrize("architecture", sorted(ARCHITECTURES))
def test_every_architecture_rebuilds_from_its_file_alone(architecture, tmp_path):
    config = ModelConfig(architecture, ("a", "b", "c"), "classes", TINY[architecture])
    torch.manual_seed(1)
    model = build(config).eval()
    save(model, tmp_path / "m.safetensors")
    again = load_model(str(tmp_path / "m.safetensors"))
    x = torch.from_numpy(synth.chord(model.window.length / RATE + 0.01, RATE)[:, : model.window.length])
    out, out_again = model.features(x), again.features(x)
    assert out.logits.shape == (1, 3) and out.embedding.shape == (1, model.embedding_dim)
    torch.testing.assert_close(out_again.logits, out.logits)
    assert again.labels == ("a", "b", "c") and not again.multilabel


def test_a_file_that_is_not_a_model_is_refused(tmp_path):
    bad = tmp_path / "model.safetensors"
    bad.write_text("hello")
    with pytest.raises(ModelError, match="not a soundalike model file"):
        load_model(str(bad))


def test_training_learns_writes_reports_and_the_model_indexes(two_pitches, tmp_path, capsys):
    run_dir = tmp_path / "run"
    run = train(_config(two_pitches, tmp_path), run_dir)
    result = report(run, run_dir)
    assert result["test"]["accuracy"] == 1.0
    assert result["history"][-1]["train_loss"] < result["history"][0]["train_loss"]
    assert set(result["test"]["per_class_accuracy"]) == {"high", "low"}
    assert np.sum(result["test"]["confusion"]) == len(run.task.splits["test"])
    for name in ("report.md", "report.json", "learning_curve.png", "confusion.png", "model.safetensors"):
        assert (run_dir / name).stat().st_size > 0
    assert "| random weights |" in (run_dir / "report.md").read_text()

    song = two_pitches / "high" / "0.wav"
    assert main(["analyze", str(song), "--model", str(run_dir), "--json"]) == 0
    tags = json.loads(capsys.readouterr().out)["tags"]
    assert tags[0]["tag"] == "high" and tags[0]["probability"] > 0.5
    library = tmp_path / "lib.sqlite"
    assert main(["index", str(two_pitches), "--library", str(library), "--model", str(run_dir),
                 "--workers", "1"]) == 0
    capsys.readouterr()
    assert main(["similar", str(song), "--library", str(library), "--json", "-k", "3"]) == 0
    neighbours = json.loads(capsys.readouterr().out)
    assert "/high/" in neighbours[0]["path"]

    assert main(["evaluate", str(two_pitches), "--labels", "folder", "--models", f"descriptors,{run_dir}",
                 "--k", "1", "--out", str(tmp_path / "e.json")]) == 0
    rows = {r["embedder"]: r for r in json.loads((tmp_path / "e.json").read_text())["results"]}
    assert rows[str(run_dir)]["nn_accuracy"] >= 0.75


def test_resumed_run_equals_an_uninterrupted_one(two_pitches, tmp_path):
    whole = tmp_path / "whole"
    train(_config(two_pitches, tmp_path, epochs=2), whole)
    halves = tmp_path / "halves"
    train(_config(two_pitches, tmp_path, epochs=1), halves)
    run = train(_config(two_pitches, tmp_path, epochs=2), halves)  # resumes from the checkpoint
    assert len(run.history) == 2
    a, b = load_file(whole / CHECKPOINT_FILE), load_file(halves / CHECKPOINT_FILE)
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0, msg=key)


def test_resuming_with_other_options_is_refused(two_pitches, tmp_path):
    train(_config(two_pitches, tmp_path, epochs=1), tmp_path / "run")
    with pytest.raises(ParameterError, match="another config"):
        train(_config(two_pitches, tmp_path, epochs=1, lr=0.1), tmp_path / "run")


def test_probe_on_frozen_descriptors(two_pitches, tmp_path):
    config = _config(two_pitches, tmp_path, model="probe", embedder="descriptors", params={"hidden": 0},
                     epochs=30, patience=30, lr=0.03)
    run = train(config, tmp_path / "probe")
    assert report(run, tmp_path / "probe")["test"]["accuracy"] == 1.0
    model = load_model(str(tmp_path / "probe"))
    assert model.embedding_dim == 77  # a linear probe embeds as its embedder does


def test_musicnn_fine_tuning_starts_from_the_shipped_weights(two_pitches, tmp_path):
    from soundalike.datasets import open_dataset
    from soundalike.train.trainer import _task

    config = _config(two_pitches, tmp_path, model="musicnn", init="msd-musicnn", params={})
    task = _task(config, open_dataset(config.data), tmp_path)
    tuned, shipped = build_model(config, task).state_dict(), load_model("msd-musicnn").state_dict()
    torch.testing.assert_close(tuned["frontend.timbral.0.conv.weight"], shipped["frontend.timbral.0.conv.weight"])
    assert tuned["backend.output.weight"].shape == (2, 200)  # a new head for the two labels
    scratch = build_model(config, task, pretrained=False).state_dict()
    assert not torch.equal(scratch["frontend.timbral.0.conv.weight"], shipped["frontend.timbral.0.conv.weight"])


def test_track2vec_from_playlists(tmp_path):
    music = tmp_path / "music"
    music.mkdir()
    lines = []
    for cluster, base in enumerate((110.0, 1760.0)):
        files = [synth.write(music / f"{cluster}-{i}.wav", synth.chord(2.0, RATE, seed=i, root=base * (1 + 0.02 * i)),
                             RATE) for i in range(8)]
        rng = np.random.default_rng(cluster)
        lines += ["\t".join(str(f) for f in rng.permutation(files)[:5]) for _ in range(30)]
    (tmp_path / "lists.txt").write_text("\n".join(lines) + "\n")
    config = TrainConfig(data=f"playlists:{tmp_path / 'lists.txt'}", model="track2vec", vector_dim=8,
                         params=TINY["spec-cnn"], epochs=10, patience=10, lr=3e-3, batch_size=8,
                         cache=str(tmp_path / "cache"))
    run_dir = tmp_path / "t2v"
    result = report(train(config, run_dir), run_dir)
    assert result["test"]["cosine"] > result["no_audio_baseline"]["cosine"]
    model = load_model(str(run_dir))
    assert model.labels == () and model.embedding_dim == 8


def test_track2vec_needs_playlists(two_pitches, tmp_path):
    with pytest.raises(ParameterError, match="playlists"):
        train(_config(two_pitches, tmp_path, model="track2vec"), tmp_path / "x")


@pytest.mark.parametrize("options, message", [
    ({"model": "spec-cnn", "init": "msd-musicnn"}, "only musicnn"),
    ({"model": "probe"}, "needs --embedder"),
    ({"model": "nope"}, "model must be one of"),
    ({"epochs": 0}, "epochs must be at least 1"),
])
def test_bad_training_options(options, message, tmp_path):
    with pytest.raises(ParameterError, match=message):
        _config("x", tmp_path, **options)


def test_train_command(two_pitches, tmp_path, capsys):
    code = main(["train", "--data", f"folders:{two_pitches}", "--model", "raw-cnn", "--param", "channels=8",
                 "--param", "seconds=1.0", "--epochs", "2", "--out", str(tmp_path / "run"),
                 "--cache", str(tmp_path / "cache")])
    assert code == 0
    out = capsys.readouterr().out
    assert "# raw-cnn on folders:" in out and "| trained |" in out
    assert main(["train", "--data", "gtzan", "--model", "raw-cnn", "--out", str(tmp_path / "r")]) == 2
    assert "KIND:PATH" in capsys.readouterr().err
