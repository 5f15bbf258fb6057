"""The commands that only read a library start without PyTorch and the other heavy
libraries (bench/bench_startup.py measures how fast they answer)."""

import json
import subprocess
import sys

import numpy as np
import pytest

from soundalike.audio import TrackMetadata
from soundalike.library import Library
from soundalike.library.catalogue import ModelDescription, TrackRecord

HEAVY = ("torch", "sklearn", "matplotlib", "librosa", "scipy", "av", "soundfile", "soxr")
# runs a command as the console script does, then prints its exit status and the heavy modules it imported
RUN = """
import contextlib, io, json, sys
from soundalike.cli import main
with contextlib.redirect_stdout(io.StringIO()):
    try:
        code = main(sys.argv[2:])
    except SystemExit as exit:  # --help
        code = exit.code
print(json.dumps({"code": code, "heavy": [m for m in json.loads(sys.argv[1]) if m in sys.modules]}))
"""


@pytest.fixture(scope="module")
def library(tmp_path_factory):
    """Three tracks of the default model's library, as stored (no audio analysed)."""
    path = tmp_path_factory.mktemp("startup") / "library.sqlite"
    with Library(path, create=True) as library:
        library.catalogue.bind_model(ModelDescription("msd-mtt-musicnn", ("rock", "piano"), (4,), (1.0,)))
        for i, title in enumerate(("Night Drive", "Morning", "Noon")):
            vector = np.random.default_rng(i).standard_normal(4).astype(np.float32)
            library.catalogue.put(TrackRecord(
                path=f"/music/{title}.mp3", size=1, mtime_ns=1, metadata=TrackMetadata("Ann", title, None, None, 60.0),
                excerpt=10, vector=vector, tags=np.array([0.2, 0.7], np.float32), patches=vector[None, :],
                starts=np.zeros(1, np.float32)))
        library.refresh_index()
    return path


@pytest.mark.parametrize("command", [["--help"], ["similar", "--help"], ["stats"], ["stats", "--json"],
                                     ["search", "--tag", "piano"], ["tags", "2"], ["tags", "night"],
                                     ["similar", "1"], ["similar", "morning", "--json"]])
def test_library_commands_import_no_heavy_library(command, library):
    args = command if command[-1] == "--help" else [*command, "--library", str(library)]
    proc = subprocess.run([sys.executable, "-c", RUN, json.dumps(HEAVY), *args],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == {"code": 0, "heavy": []}
