"""The command line, run in-process and as a real console script."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import synth
from soundalike.cli import main


@pytest.fixture(scope="module")
def song(tmp_path_factory):
    path = tmp_path_factory.mktemp("cli") / "song.mp3"
    return synth.write(path, np.tile(synth.chord(9.0, 44_100), (2, 1)), 44_100)


def test_analyze_prints_top_tags(song, capsys):
    assert main(["analyze", str(song), "--top", "5"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith(f"{song}  (msd-musicnn, 3 patches)")
    probs = [float(line.split()[0]) for line in out[1:]]
    assert len(probs) == 5 and probs == sorted(probs, reverse=True)


def test_analyze_writes_npz(song, tmp_path, capsys):
    out = tmp_path / "a.npz"
    assert main(["analyze", str(song), "--model", "mtt-musicnn", "--out", str(out)]) == 0
    data = np.load(out)
    assert data["taggram"].shape == (3, 50)
    assert data["penultimate"].shape == (3, 200)
    assert list(data["tags"][:3]) == ["guitar", "classical", "slow"]
    assert not bool(data["padded"])


def test_analyze_json_and_padding_note(tmp_path, capsys):
    path = synth.write(tmp_path / "blip.wav", synth.tone(880, 0.5, 16_000), 16_000)
    assert main(["analyze", str(path), "--json", "--top", "2"]) == 0
    captured = capsys.readouterr()
    doc = json.loads(captured.out)
    assert doc["patches"] == 1 and doc["padded"] is True and len(doc["tags"]) == 2
    assert "shorter than one 3.01 s patch" in captured.err


def test_analyze_with_a_model_without_tags(song, tmp_path, capsys):
    out = tmp_path / "d.npz"
    assert main(["analyze", str(song), "--model", "descriptors", "--out", str(out)]) == 0
    assert "descriptors predicts no tags; --out saves its 77-d vectors" in capsys.readouterr().out
    assert np.load(out)["penultimate"].shape == (3, 77)


def test_bad_file_exits_2_naming_file_and_cause(tmp_path, capsys):
    path = tmp_path / "fake.mp3"
    path.write_text("not audio")
    assert main(["analyze", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("soundalike: error: ") and "fake.mp3: " in err


def test_console_script_runs(song):
    script = Path(sys.executable).parent / "soundalike"
    proc = subprocess.run([str(script), "analyze", str(song), "--top", "1", "--threads", "1"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "3 patches" in proc.stdout
