"""Never lose a track, never serve a 500: the vector index bound to its library and
checked, damaged libraries (one-line errors, ``soundalike repair``) and read-only ones."""

import hashlib
import json
import logging
import os
import re
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from conftest import with_permission_checks
from soundalike.audio import TrackMetadata
from soundalike.cli import main
from soundalike.library import Library, LibraryError, catalogue, events
from soundalike.library.catalogue import ModelDescription, TrackRecord
from soundalike.server import create_app

TRACKS, DIM, PATCHES, TAGS = 200, 64, 10, ("rock", "jazz", "piano")
PAGE = 4096
# one command of each kind that reads a library; {out}: a file in the test's folder
COMMANDS = {
    "similar": ["similar", "5"],
    "radio": ["radio", "5", "--length", "5"],
    "path": ["path", "5", "9", "--length", "5"],
    "tags": ["tags", "5"],
    "search": ["search", "--tag", "rock"],
    "stats": ["stats"],
    "export": ["export", "--out", "{out}"],
}


def build(path: Path, *, seed: int = 0, index: bool = True) -> Path:
    """A library of TRACKS random tracks (about 110 pages), with its vector index saved."""
    rng = np.random.default_rng(seed)
    with Library(path, create=True) as lib:
        lib.catalogue.bind_model(ModelDescription("test", TAGS, (DIM,), (1.0,)))
        for i in range(TRACKS):
            patches = rng.standard_normal((PATCHES, DIM)).astype(np.float32)
            meta = TrackMetadata(artist=f"A{i % 7}", title=f"Song {i}", duration=60.0)
            lib.catalogue.put(TrackRecord(f"/music/song{i:03d}.flac", 1, 1, meta, 0, patches.mean(axis=0),
                                          rng.random(len(TAGS)).astype(np.float32), patches,
                                          np.arange(PATCHES, dtype=np.float32) * 3))
        if index:
            lib.refresh_index()
    return path


def index_files(library: Path) -> tuple[Path, Path]:
    return Path(f"{library}.faiss"), Path(f"{library}.faiss.json")


def damage(path: Path, first: int, count: int = 1) -> None:
    """Write garbage over ``count`` pages from page index ``first`` (0: the header's page)."""
    with open(path, "r+b") as file:
        file.seek(first * PAGE)
        file.write(np.random.default_rng(first).integers(0, 256, count * PAGE, dtype=np.uint8).tobytes())


def seeds_come_first(lib: Library) -> bool:
    """Whether every track is its own nearest neighbour in the library's index (as in a
    right index; an index of other vectors under the same ids gets this wrong)."""
    ids, vectors = lib.catalogue.arrays("vector")
    return all(lib.index.search(v, 1)[1].tolist() == [i] for i, v in zip(ids, lib.space.project(vectors)))


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("soundalike: error: "), err
    return err


def command(name: str, library: Path, out_dir: Path) -> list[str]:
    return [a.format(out=out_dir / "out.csv") for a in COMMANDS[name]] + ["--library", str(library)]


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    return build(tmp_path_factory.mktemp("built") / "lib.sqlite")


@pytest.fixture
def library(built, tmp_path):
    """A copy of the built library, with its index."""
    library = tmp_path / "lib.sqlite"
    for source, copy in zip((built, *index_files(built)), (library, *index_files(library))):
        shutil.copy(source, copy)
    return library


# --- the vector index: bound to its library, checked --------------------------------------

def test_a_library_restored_from_an_older_copy_does_not_reuse_the_newer_index(library, tmp_path):
    backup = tmp_path / "backup.sqlite"
    shutil.copy(library, backup)  # the library as it was (its WAL is checkpointed on close)
    with Library(library) as lib:  # then removes tracks and rewrites others: ids move on
        lib.catalogue.remove([f"/music/song{i:03d}.flac" for i in range(0, TRACKS, 2)])
        lib.refresh_index()
    shutil.copy(backup, library)  # restored: older generation, same identity, newer index beside it
    with Library(library) as lib:
        assert len(lib.index) == TRACKS
        assert seeds_come_first(lib)


def test_another_programs_database_is_refused_and_left_alone(tmp_path, capsys):
    other = tmp_path / "photos.db"
    db = sqlite3.connect(other)
    db.execute("CREATE TABLE photos (name TEXT)")
    db.commit()
    db.close()
    before = other.read_bytes()
    for args in (["stats"], ["index", str(tmp_path)]):
        assert main([*args, "--library", str(other)]) == 2
        assert "not a soundalike library" in one_line_error(capsys)
    assert other.read_bytes() == before


def test_an_index_left_by_a_deleted_library_is_not_used(library):
    """A library made again where one was deleted reaches the same generation with other
    vectors under the same ids: the old index is another library's, and is rebuilt."""
    with Library(library) as lib:
        generation = lib.catalogue.generation
    library.unlink()
    build(library, seed=1, index=False)
    with Library(library) as lib:
        assert lib.catalogue.generation == generation
        assert seeds_come_first(lib)
        assert json.loads(index_files(library)[1].read_text())["library"] == lib.catalogue.identity


def test_a_library_from_before_identities_gets_one_when_opened_for_writing(library):
    db = sqlite3.connect(library)
    db.execute("DELETE FROM meta WHERE key = 'library_id'")
    db.commit()
    db.close()
    state_path = index_files(library)[1]
    state = json.loads(state_path.read_text())
    del state["library"], state["checksum"]
    state_path.write_text(json.dumps(state))  # as saved before identities
    with Library(library, readonly=True) as lib:  # no identity to check the index against: rebuilt, in memory
        assert lib.catalogue.identity is None and seeds_come_first(lib)
    assert json.loads(state_path.read_text()) == state
    with Library(library) as lib:
        identity = lib.catalogue.identity
        assert identity and len(lib.index) == TRACKS
    assert json.loads(state_path.read_text())["library"] == identity


def test_a_damaged_index_file_is_rebuilt_with_a_warning(library, caplog):
    """Garbage in the vectors of an index file whose header is intact: faiss reads it
    without complaint, the checksum does not match."""
    index_path = index_files(library)[0]
    data = bytearray(index_path.read_bytes())
    middle = len(data) // 2
    data[middle:middle + PAGE] = np.random.default_rng(0).integers(0, 256, PAGE, dtype=np.uint8).tobytes()
    index_path.write_bytes(bytes(data))
    with caplog.at_level(logging.WARNING, logger="soundalike.library.vectors"), Library(library) as lib:
        assert seeds_come_first(lib)
    assert f"{index_path} and {index_files(library)[1]}: the saved vector index is damaged" in caplog.text
    saved = json.loads(index_files(library)[1].read_text())["checksum"]
    assert saved == hashlib.sha256(index_path.read_bytes()).hexdigest()


@pytest.mark.parametrize("spoil", [
    lambda state: "{not json",
    lambda state: "[]",
    lambda state: json.dumps({k: v for k, v in state.items() if k != "checksum"}),
    lambda state: json.dumps({k: v for k, v in state.items() if k != "centre"}),
    lambda state: json.dumps({**state, "count": 3}),
], ids=["not-json", "not-an-object", "no-checksum", "no-centre", "wrong-count"])
def test_a_damaged_index_state_is_rebuilt_with_a_warning(library, caplog, spoil):
    state_path = index_files(library)[1]
    state_path.write_text(spoil(json.loads(state_path.read_text())))
    with caplog.at_level(logging.WARNING, logger="soundalike.library.vectors"), Library(library) as lib:
        assert seeds_come_first(lib)
    assert f"{state_path}: the saved vector index is damaged" in caplog.text
    assert json.loads(state_path.read_text())["count"] == TRACKS  # saved again, whole


# --- a damaged library -----------------------------------------------------------------

@pytest.fixture
def damaged(library):
    """The library with garbage over eight of its middle pages (tracks), and no saved
    index: rebuilding it reads every track."""
    damage(library, first=40, count=8)
    for path in index_files(library):
        path.unlink()
    return library


@pytest.mark.parametrize("name", COMMANDS)
def test_a_damaged_library_is_a_one_line_error_saying_what_to_do(damaged, tmp_path, capsys, name):
    assert main(command(name, damaged, tmp_path)) == 2
    err = one_line_error(capsys)
    assert f"{damaged}: the library file is damaged (database disk image is malformed)" in err
    assert f"run 'soundalike repair --library {damaged}'" in err


def test_index_refuses_to_write_into_a_damaged_library(damaged, tmp_path, capsys):
    """A page can be damaged where no reader goes yet: the writer checks the whole file."""
    assert main(["index", str(tmp_path), "--library", str(damaged)]) == 2
    assert "the library file is damaged" in one_line_error(capsys)


def test_the_server_answers_a_damaged_library_with_a_503_saying_what_to_do(damaged):
    with TestClient(create_app(damaged)) as client:
        response = client.get("/api/library")
    assert response.status_code == 503 and "soundalike repair" in response.json()["detail"]


def test_repair_recovers_what_can_be_read_and_keeps_the_damaged_file(damaged, tmp_path, capsys):
    with Library(damaged, readonly=True) as lib:
        identity = lib.catalogue.identity
    damaged_bytes = damaged.read_bytes()
    capsys.readouterr()
    assert main(["repair", "--library", str(damaged)]) == 0
    out = capsys.readouterr().out
    recovered, lost = (int(n) for n in re.search(r"recovered (\d+) tracks .* lost (\d+) tracks", out).groups())
    assert recovered + lost == TRACKS and 0 < lost < 40
    assert len(re.findall(r"^  lost: /music/song\d+\.flac$", out, re.M)) == lost
    assert "'soundalike index FOLDER' on the library's folders analyses the lost files again" in out
    kept = Path(re.search(r"the damaged file is kept as (\S+)", out).group(1))
    assert kept.name.startswith("lib.sqlite.damaged-") and kept.read_bytes() == damaged_bytes
    with Library(damaged) as lib:
        assert lib.catalogue.count() == recovered and lib.catalogue.identity not in (None, identity)
        assert lib.catalogue.db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert seeds_come_first(lib)
    assert main(["similar", "5", "--library", str(damaged), "--json"]) == 0
    assert main(["repair", "--library", str(damaged)]) == 0
    assert "no damage found" in capsys.readouterr().out


def test_repair_without_the_model_record_keeps_no_track_and_names_them_all(library, capsys):
    """Tracks whose model is unknown cannot be compared with anything: they are listed
    as lost, for ``soundalike index`` to analyse again."""
    with Library(library) as lib:
        events.record(lib.catalogue, 1, "like", profile="ann")
    damage(library, first=1)  # the meta table's page
    assert main(["repair", "--library", str(library)]) == 0
    out = capsys.readouterr().out
    assert f"recovered 0 tracks and 0 failure records of {library}; lost {TRACKS} tracks:" in out
    with Library(library) as lib:
        assert lib.catalogue.count() == 0
        assert [(e.kind, e.path) for e in events.events(lib.catalogue, "ann")] == [("like", "/music/song000.flac")]  # kept


def test_repair_leaves_an_undamaged_library_as_it_is(library, capsys):
    before = library.read_bytes()
    assert main(["repair", "--library", str(library)]) == 0
    assert f"{library}: no damage found ({TRACKS} tracks); nothing to repair" in capsys.readouterr().out
    assert library.read_bytes() == before and not list(library.parent.glob("*damaged*"))


# --- a read-only library ---------------------------------------------------------------

@pytest.fixture
def read_only(library, monkeypatch):
    """The library as seen by a user who may not write it (root writes through chmod,
    so the one check that decides is told so); no saved index, which must then live in
    memory."""
    monkeypatch.setattr(catalogue, "writable", lambda path: False)
    for path in index_files(library):
        path.unlink()
    return library


@pytest.mark.parametrize("name", COMMANDS)
def test_read_only_commands_work_on_a_read_only_library(read_only, tmp_path, name):
    before = read_only.read_bytes()
    assert main(command(name, read_only, tmp_path)) == 0
    assert read_only.read_bytes() == before and not any(p.exists() for p in index_files(read_only))


def test_index_on_a_read_only_library_is_a_one_line_error(read_only, tmp_path, capsys):
    assert main(["index", str(tmp_path), "--library", str(read_only)]) == 2
    assert f"{read_only} is read-only (the file or its folder cannot be written)" in one_line_error(capsys)


def test_the_server_answers_from_a_read_only_library(read_only):
    with TestClient(create_app(read_only)) as client:
        assert client.get("/api/library").json()["tracks"] == TRACKS
        assert len(client.get("/api/tracks/5/similar", params={"k": 3}).json()) == 3


def test_a_read_only_library_of_an_older_schema_needs_one_writable_open(library):
    db = sqlite3.connect(library)
    db.execute("UPDATE meta SET value = '1' WHERE key = 'schema_version'")
    db.commit()
    db.close()
    with pytest.raises(LibraryError, match="read-only here, that must be upgraded; open it once where it is writable"):
        Library(library, readonly=True)


COMMANDS_IN_ONE_PROCESS = """
import sys
from soundalike.cli import main
for args in sys.argv[1:]:
    print("exit", main(args.split()), flush=True)
"""


def test_a_library_whose_file_and_folder_cannot_be_written(built, tmp_path):
    """For real: chmod 0o444 file, 0o555 folder. SQLite needs the folder to share a WAL
    library between readers; without it, the file is read as immutable."""
    folder = tmp_path / "ro"
    folder.mkdir()
    library = shutil.copy(built, folder / "lib.sqlite")
    os.chmod(library, 0o444)
    os.chmod(folder, 0o555)
    try:
        run = subprocess.run([*with_permission_checks(), sys.executable, "-c", COMMANDS_IN_ONE_PROCESS,
                              f"similar 5 -k 3 --json --library {library}", f"index {tmp_path} --library {library}"],
                             capture_output=True, text=True, timeout=120)
    finally:
        os.chmod(folder, 0o755)
    assert re.findall(r"^exit \d+$", run.stdout, re.M) == ["exit 0", "exit 2"], run.stdout + run.stderr
    assert len(json.loads(run.stdout.splitlines()[0])) == 3
    assert run.stderr.strip() == (f"soundalike: error: {library} is read-only (the file or its folder cannot be "
                                  "written) and this command writes to it; make both writable, or give another "
                                  "--library")
    assert sorted(p.name for p in folder.iterdir()) == ["lib.sqlite"]
