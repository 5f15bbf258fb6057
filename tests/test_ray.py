"""Indexing on a Ray cluster: a real local cluster on loopback, started and stopped here."""

import logging
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from soundalike.cli import main
from soundalike.library import Library
from songs import make_music, write_song

ray = pytest.importorskip("ray")

CLUSTER_ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",  # every listener on 127.0.0.1
               "RAY_USAGE_STATS_ENABLED": "0"}


@pytest.fixture(scope="module")
def cluster():
    """A Ray cluster of this machine (3 logical CPUs: two network actors and a decoding task)."""
    os.environ.update(CLUSTER_ENV)
    ray.init(num_cpus=3, include_dashboard=False, _node_ip_address="127.0.0.1", log_to_driver=False,
             logging_level=logging.ERROR)
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


@pytest.fixture(scope="module")
def music(tmp_path_factory):
    root = make_music(tmp_path_factory.mktemp("music"))
    (root / "broken.mp3").write_text("not audio at all")
    return root


def index(music, library, *options):
    return main(["index", str(music), "--library", str(library), "--workers", "2", *options])


def same_tracks(ray_library: Path, local_library: Path):
    """Every track of both libraries stored alike: tags, patches, vectors, measures."""
    with Library(ray_library) as got, Library(local_library) as want:
        tracks = got.catalogue.tracks()
        assert sorted(t.path for t in tracks) == sorted(t.path for t in want.catalogue.tracks())
        for track in tracks:
            other = want.catalogue.track_by_path(track.path)
            for what in ("vector", "tags"):
                np.testing.assert_allclose(got.catalogue.arrays(what, [track.id])[1],
                                           want.catalogue.arrays(what, [other.id])[1], atol=1e-5)
            (patches, starts), (other_patches, other_starts) = (got.catalogue.patches(track.id),
                                                                want.catalogue.patches(other.id))
            np.testing.assert_allclose(patches, other_patches, atol=1e-3)  # stored as float16
            np.testing.assert_array_equal(starts, other_starts)
            assert got.catalogue.musical([track.id]).get(track.id) == want.catalogue.musical([other.id]).get(other.id)
        assert got.catalogue.failures() == want.catalogue.failures()


@pytest.mark.parametrize("excerpt", ["1", "10"])  # the 7 s songs: one spread patch, or analysed whole
def test_ray_indexing_stores_what_local_indexing_does(cluster, music, tmp_path, capsys, excerpt):
    assert index(music, tmp_path / "local.sqlite", "--excerpt", excerpt) == 1  # 1: broken.mp3 failed
    capsys.readouterr()
    assert index(music, tmp_path / "ray.sqlite", "--excerpt", excerpt, "--ray", "local") == 1
    out = capsys.readouterr().out
    assert "indexed 7, unchanged 0, removed 0, failed 1" in out
    assert "broken.mp3: not a readable audio file" in out
    same_tracks(tmp_path / "ray.sqlite", tmp_path / "local.sqlite")
    assert ray.is_initialized()  # the command used this process's cluster and left it running
    # idempotent: a second run has nothing to do (a file that failed is tried again on request only)
    assert index(music, tmp_path / "ray.sqlite", "--excerpt", excerpt, "--ray", "local") == 0
    assert "indexed 0, unchanged 7, removed 0, failed 0" in capsys.readouterr().out


def test_ray_indexing_resumes_and_reaches_a_cluster_by_address(cluster, music, tmp_path, capsys):
    library = tmp_path / "r.sqlite"
    assert index(music / "a", library, "--ray", "local") == 0
    capsys.readouterr()
    command = [sys.executable, "-m", "soundalike.cli", "index", str(music), "--library", str(library),
               "--workers", "1", "--ray", cluster]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, env={**os.environ, **CLUSTER_ENV})
    assert done.returncode == 1, done.stderr
    assert "indexed 5, unchanged 2, removed 0, failed 1" in done.stdout
    with Library(library) as lib:
        assert lib.catalogue.count() == 7


def test_the_gpu_asked_of_a_cluster_without_one_is_refused(cluster, music, tmp_path, capsys):
    assert index(music / "a", tmp_path / "g.sqlite", "--ray", "local", "--device", "cuda") == 2
    assert "--device cuda: the Ray cluster at local has no GPU" in capsys.readouterr().err


CRASHER = """
import os
import soundalike.library.ray_indexer as ray_indexer

_track_record = ray_indexer.track_record


def track_record(f, *args):
    if "crash_me" in f.path:
        os._exit(3)  # the network actor's process dies, as on a segfault
    return _track_record(f, *args)


ray_indexer.track_record = track_record
"""


def test_a_file_that_kills_its_process_is_recorded_and_the_rest_indexed(tmp_path):
    """A private local cluster whose processes run a sitecustomize that dies on one file."""
    hooks = tmp_path / "hooks"
    hooks.mkdir()
    (hooks / "sitecustomize.py").write_text(CRASHER)
    root = tmp_path / "m"
    for name in ("a", "b_crash_me", "c", "d"):  # the crash in the middle, with one network actor
        write_song(root, f"{name}.flac", "W", name, None, ("tone", 200 + 50 * len(name)))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(hooks), os.environ.get("PYTHONPATH", "")])}
    command = [sys.executable, "-m", "soundalike.cli", "index", str(root), "--library", str(tmp_path / "c.sqlite"),
               "--workers", "1", "--ray", "local"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 1, done.stderr
    assert "indexed 3, unchanged 0, removed 0, failed 1" in done.stdout  # the actor restarted for c and d
    assert "b_crash_me.flac: the analysis process crashed on this file" in done.stdout
    assert "Traceback" not in done.stderr
    with Library(tmp_path / "c.sqlite") as lib:
        assert sorted(t.title for t in lib.catalogue.tracks()) == ["a", "c", "d"]


def test_ray_options_refused_with_a_sentence(tmp_path, capsys, monkeypatch):
    assert main(["index", str(tmp_path), "--ray", "local", "--subsonic", "http://127.0.0.1:1",
                 "--library", str(tmp_path / "x.sqlite")]) == 2
    assert "--ray indexes files the cluster's nodes can read, not a Subsonic server's songs" in capsys.readouterr().err
    write_song(tmp_path / "m", "a.flac", "W", "a", None, ("tone", 300))
    monkeypatch.setitem(sys.modules, "ray", None)  # as if the cluster extra were not installed
    assert main(["index", str(tmp_path / "m"), "--ray", "local", "--library", str(tmp_path / "y.sqlite")]) == 2
    assert "--ray needs Ray: pip install 'soundalike[cluster]'" in capsys.readouterr().err
