"""Indexing under faults: folders that cannot be read, drives that went away, killed runs,
two runs at once. Nothing already in the library may be lost."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import synth
from conftest import with_permission_checks
from soundalike.cli import main
from soundalike.library import Library, indexer

from songs import write_song

SOUNDALIKE = str(Path(sys.executable).parent / "soundalike")


def index_command(root, library, *extra):
    return [SOUNDALIKE, "index", str(root), "--library", str(library), "--workers", "1", "--threads", "1", *extra]


def tracks_in(library) -> set[str]:
    with Library(library) as lib:
        return {Path(t.path).name for t in lib.catalogue.tracks()}


@pytest.fixture
def two_folders(tmp_path):
    root = tmp_path / "music"
    write_song(root, "a/low.flac", "Ann", "Low", None, ("chord", 0))
    write_song(root, "b/high.flac", "Bob", "High", None, ("tone", 1760))
    library = tmp_path / "lib.sqlite"
    assert main(["index", str(root), "--library", str(library), "--workers", "1"]) == 0
    return root, library


def test_an_unreadable_folder_keeps_its_tracks(two_folders):
    root, library = two_folders
    locked = root / "a"
    locked.chmod(0)
    try:
        for target in (root, locked):  # a folder inside the root, and the folder itself given
            proc = subprocess.run(with_permission_checks() + index_command(target, library),
                                  capture_output=True, text=True, timeout=120)
            assert proc.returncode == 1, proc.stderr
            assert f"cannot read {locked} (Permission denied); the tracks under it are kept" in proc.stderr
            assert "removed 0" in proc.stdout
            assert tracks_in(library) == {"low.flac", "high.flac"}
    finally:
        locked.chmod(0o755)
    # readable again: nothing to do, and a file really deleted is removed
    (root / "b" / "high.flac").unlink()
    assert main(["index", str(root), "--library", str(library), "--workers", "1"]) == 0
    assert tracks_in(library) == {"low.flac"}


def test_a_linked_file_whose_target_went_away_keeps_its_track(tmp_path, capsys):
    drive = tmp_path / "drive"
    song = write_song(drive, "album/song.flac", "Ann", "On the drive", None, ("chord", 3))
    root = tmp_path / "music"
    write_song(root, "here.flac", "Bob", "Here", None, ("tone", 440))
    (root / "there.flac").symlink_to(song)
    (root / "stale.flac").symlink_to(tmp_path / "nothing.flac")  # never led anywhere: nothing to keep, no warning
    library = tmp_path / "lib.sqlite"
    assert main(["index", str(root), "--library", str(library), "--workers", "1"]) == 0
    assert "stale" not in capsys.readouterr().err
    assert tracks_in(library) == {"here.flac", "there.flac"}
    drive.rename(tmp_path / "unmounted")  # the link now leads nowhere, as into an unmounted drive
    assert main(["index", str(root), "--library", str(library), "--workers", "1"]) == 1
    captured = capsys.readouterr()
    assert f"cannot read {root / 'there.flac'} (a link to something not there)" in captured.err
    assert "removed 0" in captured.out
    assert tracks_in(library) == {"here.flac", "there.flac"}


def test_an_unreadable_folder_without_tracks_is_no_failure(two_folders, capsys):
    root, library = two_folders
    (root / "lost+found").mkdir(mode=0)  # as at the top of every ext4 drive
    try:
        proc = subprocess.run(with_permission_checks() + index_command(root, library, "-v"),
                              capture_output=True, text=True, timeout=120)
    finally:
        (root / "lost+found").chmod(0o755)
    assert proc.returncode == 0, proc.stderr
    assert "warning" not in proc.stderr
    assert f"cannot read {root / 'lost+found'} (Permission denied); no track of the library is there" in proc.stderr


def test_removing_most_of_the_library_asks_for_prune(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(indexer, "PRUNE_MIN_TRACKS", 1)  # the share matters here, not the size
    root = tmp_path / "music"
    for i in range(4):
        write_song(root, f"s{i}.flac", "K", f"Song {i}", None, ("chord", i))
    library = tmp_path / "lib.sqlite"
    assert main(["index", str(root), "--library", str(library), "--workers", "1"]) == 0
    (root / "s0.flac").unlink()  # a quarter: removed without asking
    assert main(["index", str(root), "--library", str(library), "--workers", "1"]) == 0
    assert tracks_in(library) == {"s1.flac", "s2.flac", "s3.flac"}
    for name in ("s1.flac", "s2.flac"):  # two of the three left: more than half
        (root / name).unlink()
    capsys.readouterr()
    assert main(["index", str(root), "--library", str(library), "--workers", "1"]) == 1
    captured = capsys.readouterr()
    assert "removed 0" in captured.out
    assert "2 of the library's 3 tracks have no file any more" in captured.err
    assert "run the same command with --prune" in captured.err
    assert tracks_in(library) == {"s1.flac", "s2.flac", "s3.flac"}
    assert main(["index", str(root), "--library", str(library), "--workers", "1", "--prune"]) == 0
    assert "removed 2" in capsys.readouterr().out
    assert tracks_in(library) == {"s3.flac"}


def test_prune_threshold():
    assert not indexer.needs_prune(indexer.PRUNE_MIN_TRACKS, 2 * indexer.PRUNE_MIN_TRACKS // 3 + 1)
    assert indexer.needs_prune(indexer.PRUNE_MIN_TRACKS + 1, indexer.PRUNE_MIN_TRACKS + 1)
    assert not indexer.needs_prune(500, 1000)
    assert indexer.needs_prune(501, 1000)


def test_linked_folders_are_not_walked_and_loops_are_errors(tmp_path, capsys):
    root = tmp_path / "music"
    for rel in ["a/x.flac", "b/y.flac"]:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(b"x")
    (root / "a" / "back").symlink_to(root, target_is_directory=True)  # a loop through the tree
    (root / "b" / "again").symlink_to(root / "a", target_is_directory=True)  # a second path to a/x.flac
    found = sorted(Path(f.path).relative_to(root).as_posix() for f in indexer.find_audio([root]))
    assert found == ["a/x.flac", "b/y.flac"]
    assert [Path(f.path).name for f in indexer.find_audio([root / "b" / "again"])] == ["x.flac"]  # as a root
    loop = tmp_path / "loop"
    loop.symlink_to(tmp_path / "loop2")
    (tmp_path / "loop2").symlink_to(loop)
    assert main(["index", str(loop), "--library", str(tmp_path / "l.sqlite")]) == 2
    assert f"{loop}: cannot be resolved" in capsys.readouterr().err


@pytest.fixture(scope="module")
def long_music(tmp_path_factory):
    """Four hard links to one 4-minute recording: minutes of analysis at every patch."""
    root = tmp_path_factory.mktemp("long")
    first = root / "t0.wav"
    synth.write(first, np.tile(synth.chord(8.0, 16_000), (1, 30)), 16_000)
    for i in range(1, 4):
        os.link(first, root / f"t{i}.wav")
    return root


def workers_of(pid: int) -> set[int]:
    """The analysis processes of process ``pid`` (not multiprocessing's resource tracker)."""
    try:
        children = {int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()}
    except OSError:
        return set()
    found = set()
    for child in children:
        try:
            command = Path(f"/proc/{child}/cmdline").read_bytes()
        except OSError:
            continue
        if b"spawn_main" in command and b"resource_tracker" not in command:
            found.add(child)
    return found


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="reads process children from Linux's /proc")
def test_workers_die_with_a_killed_index_run(long_music, tmp_path):
    cmd = [SOUNDALIKE, "index", str(long_music), "--library", str(tmp_path / "l.sqlite"), "--workers", "2",
           "--excerpt", "0"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 120
        while len(workers := workers_of(proc.pid)) < 2 and time.time() < deadline and proc.poll() is None:
            time.sleep(0.1)
        assert len(workers) >= 2, "the index run started no worker processes"
        time.sleep(1.0)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    deadline = time.time() + 30
    while any(alive(w) for w in workers) and time.time() < deadline:
        time.sleep(0.2)
    left = [w for w in workers if alive(w)]
    for w in left:
        os.kill(w, signal.SIGKILL)
    assert not left, "worker processes outlived the killed index run"


def test_a_second_index_run_waits_for_the_first(long_music, tmp_path):
    library = tmp_path / "l.sqlite"
    first = subprocess.Popen(index_command(long_music, library, "--excerpt", "0"),
                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    deadline = time.time() + 120
    while not Path(f"{library}.lock").exists() and time.time() < deadline:
        time.sleep(0.05)
    try:
        assert first.poll() is None, "the first run ended before the second began"
        second = subprocess.run(index_command(long_music, library, "--excerpt", "0"),
                                capture_output=True, text=True, timeout=600)
        first_out = first.communicate(timeout=600)[0]
    finally:
        first.kill()
    assert first.returncode == 0
    assert "indexed 4, unchanged 0" in first_out
    assert f"waiting for another 'soundalike index' or 'repair' on {library} to finish" in second.stderr
    assert second.returncode == 0, second.stderr
    assert "indexed 0, unchanged 4" in second.stdout


@pytest.mark.parametrize("args, message", [
    (["radio", "x", "--random-seed", "-1"], "argument --random-seed: -1 is out of range"),
    (["radio", "x", "--length", "0"], "argument --length: 0 is too small: give 1 or more"),
    (["similar", "x", "--min-prob", "5"], "argument --min-prob: 5.0 is out of range: give 0 to 1"),
    (["similar", "x", "-k", "many"], "argument -k: 'many' is not a whole number"),
    (["tags", "x", "--top", "-1"], "argument --top: -1 is too small"),
    (["serve", "--port", "99999"], "argument --port: 99999 is out of range: give 0 to 65535"),
    (["export", "--out", "/no/such/folder/x.npz"], "the folder /no/such/folder does not exist"),
    (["radio", "x", "--m3u", "/no/such/folder/x.m3u"], "the folder /no/such/folder does not exist"),
])
def test_arguments_out_of_range_are_one_line_errors(args, message, capsys):
    with pytest.raises(SystemExit) as exit:
        main(args)
    assert exit.value.code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_a_port_in_use_is_one_line(tmp_path, capsys):
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert main(["serve", "--port", str(port), "--library", str(tmp_path / "none.sqlite")]) == 2
    assert f"cannot listen on 127.0.0.1:{port}: Address already in use" in capsys.readouterr().err


def test_an_output_that_is_a_folder_is_refused(two_folders, capsys):
    root, library = two_folders
    target = root / "out.m3u"
    target.mkdir()  # exists, but as a folder: refused by argparse
    with pytest.raises(SystemExit):
        main(["radio", "1", "--library", str(library), "--m3u", str(target)])
    assert f"{target} is a folder; give a file name" in capsys.readouterr().err


def test_queries_that_are_no_track_are_one_line_errors(two_folders, tmp_path, capsys):
    root, library = two_folders
    loop = tmp_path / "loop"
    loop.symlink_to(tmp_path / "loop")
    no_track = "no such track id, file, or artist/title"
    for query, message in [(str(2**64), f"no track has id {2**64} in"), (str(2**63), f"no track has id {2**63}"),
                           ("x" * 300, no_track), (" ".join(["word"] * 1000), no_track),
                           (str(loop), f"{loop}: no such file, and no track of"),
                           (" ".join(f"w{i}" for i in range(1000)), "1000 different words is too long")]:
        capsys.readouterr()
        assert main(["similar", query, "--library", str(library)]) == 2
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err
