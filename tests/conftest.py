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
