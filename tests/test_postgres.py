"""The library in PostgreSQL (a real server, tests/conftest.py): versioned migrations,
several writers at once, readers that never wait, and filtered searches as complete
as exact ones. The library's behaviour on both backends is tests/test_library.py's."""

import subprocess
import sys
import threading

import numpy as np
import pytest

from conftest import new_database
from soundalike.analysis import Space
from soundalike.library import Library, postgres
from soundalike.library.catalogue import Catalogue, LibraryError
from songs import SONGS, write_song


@pytest.fixture
def database(postgres_server):
    return new_database(postgres_server)


def clustered(n, d, clusters=50, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, d))
    return (centres[rng.integers(0, clusters, n)] + 0.6 * rng.standard_normal((n, d))).astype(np.float32)


def test_filtered_search_keeps_its_recall_at_every_selectivity(database):
    """recall@10 against exact search >= 0.95 for filters keeping 1 %, 10 % and 50 % of
    the tracks; the plan follows the filter's size (20,000 tracks show all three)."""
    n, d = 20_000, 64
    vectors = clustered(n, d)
    space = Space((d,), (1.0,))
    ids = np.arange(1, n + 1)
    _, _, db = postgres.open_database(database)
    postgres._rebuild(db, ids, vectors, space)
    index = postgres.PgVectorIndex(db, space, 0, n)
    unit = space.project(vectors)
    rng = np.random.default_rng(1)
    for share, plan in ((0.01, "exact"), (0.10, "iterative"), (0.50, "iterative"), (None, "hnsw")):
        allowed = None if share is None else np.sort(rng.choice(ids, int(share * n), replace=False))
        assert index.plan(allowed) == plan
        hits = []
        for row in rng.choice(n, 40, replace=False):
            keep = np.ones(n, bool) if allowed is None else np.isin(ids, allowed)
            scores = np.where(keep, unit @ unit[row], -np.inf)
            truth = set(ids[np.argsort(-scores)[:10]].tolist())
            found_scores, found = index.search(unit[row], 10, allowed=allowed)
            assert len(found) == 10 and (allowed is None or np.isin(found, allowed).all())
            assert np.all(np.diff(found_scores) <= 1e-3)  # best first
            hits.append(len(truth & set(found.tolist())) / 10)
        assert np.mean(hits) >= 0.95, (share, np.mean(hits))
    # the kept ids as a bitmap that ends at the last kept one: every id above it is left out
    lower_half = ids[: n // 2]
    for row in (0, n - 1):
        found = index.search(unit[row], 10, allowed=lower_half)[1]
        assert len(found) == 10 and found.max() <= n // 2
    db.close()


def test_migrations_are_versioned_and_a_newer_schema_is_refused(database):
    Catalogue(database).close()
    Catalogue(database).close()  # nothing to apply the second time
    import psycopg

    with psycopg.connect(database, autocommit=True) as conn:
        assert [r[0] for r in conn.execute("SELECT version FROM schema_migrations")] == [1]
        conn.execute("INSERT INTO schema_migrations (version) VALUES (99)")
    with pytest.raises(LibraryError, match="schema version 99; this soundalike knows up to 1: upgrade soundalike"):
        Catalogue(database)


def test_a_password_never_shows_and_a_missing_server_is_named():
    url = "postgresql://me:secret@127.0.0.1:1/none?connect_timeout=2"
    with pytest.raises(LibraryError) as caught:
        Catalogue(url)
    message = str(caught.value)
    assert "secret" not in message and "postgresql://me:***@127.0.0.1:1/none" in message
    assert "cannot open the library in PostgreSQL" in message


def test_several_index_runs_write_at_once(database, tmp_path):
    """Two processes index two folders into one library at the same time: every track
    lands once, and the running vector sum matches the vectors stored."""
    for i, song in enumerate(SONGS):
        write_song(tmp_path / ("one" if i % 2 else "two"), *song)
    runs = [subprocess.Popen([sys.executable, "-m", "soundalike.cli", "index", str(tmp_path / folder),
                              "--library", database, "--workers", "1"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True) for folder in ("one", "two")]
    for run in runs:
        out, err = run.communicate(timeout=300)
        assert run.returncode == 0, err
    with Library(database) as lib:
        assert lib.catalogue.count() == len(SONGS)
        ids, vectors = lib.catalogue.arrays("vector")
        total, count = lib.catalogue.vector_sum()
        assert count == len(SONGS)
        np.testing.assert_allclose(total, vectors.astype(np.float64).sum(axis=0), rtol=1e-5, atol=1e-5)
        assert sorted(lib.index.ids.tolist()) == sorted(ids.tolist())


def test_a_reader_never_holds_up_a_writer(database, tmp_path):
    """A long read (a snapshot held open) neither blocks a write nor sees it."""
    write_song(tmp_path, *SONGS[0])
    from soundalike.cli import main

    assert main(["index", str(tmp_path), "--library", database, "--workers", "1"]) == 0
    reader, writer = Catalogue(database), Catalogue(database)
    with reader.snapshot():
        before = reader.count()
        done = threading.Event()
        threading.Thread(target=lambda: (writer.remove([writer.tracks()[0].path]), done.set()), daemon=True).start()
        assert done.wait(10), "the write waited for the reader"
        assert reader.count() == before == 1  # the reader's snapshot
    assert reader.count() == 0
    reader.close(), writer.close()


def test_serve_answers_from_several_processes(database, tmp_path, capsys):
    """serve --workers 2 on a library in PostgreSQL: two worker processes on one port,
    concurrent requests all answered alike."""
    import concurrent.futures as cf
    import time

    import httpx2 as httpx
    import psutil

    from soundalike.cli import main
    from subsonic_server import free_port

    for song in SONGS[:4]:
        write_song(tmp_path / "music", *song)
    assert main(["index", str(tmp_path / "music"), "--library", database, "--workers", "1"]) == 0
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "soundalike.cli", "serve", "--library", database, "--workers", "2",
                               "--port", str(port)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 90
        while True:
            assert server.poll() is None, server.communicate()[1]
            try:
                tracks = httpx.get(f"{base}/api/tracks", timeout=5).json()
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "the server did not come up"
                time.sleep(0.5)
        workers = [p for p in psutil.Process(server.pid).children() if "spawn_main" in " ".join(p.cmdline())]
        assert len(workers) == 2  # uvicorn's worker processes
        first = tracks[0]["id"]
        url = f"{base}/api/tracks/{first}/similar"
        with cf.ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(lambda _: httpx.get(url, params={"k": 3}, timeout=30), range(32)))
        assert {a.status_code for a in answers} == {200}
        assert len({a.text for a in answers}) == 1 and len(answers[0].json()) == 3
    finally:
        server.terminate()
        server.wait(30)


def test_serve_in_processes_needs_postgresql(tmp_path, capsys):
    from soundalike.cli import main
    from subsonic_server import free_port

    assert main(["serve", "--library", str(tmp_path / "l.sqlite"), "--workers", "2", "--port", str(free_port())]) == 2
    assert "serve --workers N needs a library in PostgreSQL" in capsys.readouterr().err


@pytest.mark.parametrize("server_setting", ["1GB", "64MB"])
def test_index_build_keeps_the_servers_memory_setting(database, server_setting):
    """An HNSW build has at least postgres.BUILD_MEMORY, never less than the server's
    setting, and leaves the connection's setting as it found it."""
    import psycopg
    from psycopg.conninfo import conninfo_to_dict

    with psycopg.connect(database, autocommit=True) as admin:
        admin.execute(f"ALTER DATABASE \"{conninfo_to_dict(database)['dbname']}\" "
                      f"SET maintenance_work_mem = '{server_setting}'")
    _, _, db = postgres.open_database(database)
    seen = []
    execute = db.execute

    def spying(sql, params=()):
        if sql.startswith("CREATE INDEX"):
            seen.append(execute("SHOW maintenance_work_mem").fetchone()[0])
        return execute(sql, params)

    db.execute = spying
    postgres._rebuild(db, np.arange(1, 51), clustered(50, 8), Space((8,), (1.0,)))
    assert seen == ["1GB" if server_setting == "1GB" else postgres.BUILD_MEMORY]
    assert execute("SHOW maintenance_work_mem").fetchone()[0] == server_setting
    db.close()
