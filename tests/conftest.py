import os
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
