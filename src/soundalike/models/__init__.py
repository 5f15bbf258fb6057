"""The model registry: a name maps to a builder, its labels and its shipped weights.

Importing this package does not import PyTorch: the networks are imported when a model
is loaded, so that commands which only read a library start quickly. ``AudioModel``,
``MusiCNN`` and the other classes are still importable from here (imported on first use).
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import ModelError, ParameterError

if TYPE_CHECKING:
    from .base import AudioModel

WEIGHTS_DIR = Path(__file__).parent / "weights"
MODEL_FILE = "model.safetensors"  # a trained model's file in its run directory


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """A registered model: ``build`` returns it with its weights loaded."""

    name: str
    build: Callable[[], AudioModel]
    description: str


def _shipped(build: Callable[[], AudioModel], weights: str) -> Callable[[], AudioModel]:
    """``build`` with the weights of ``WEIGHTS_DIR / weights`` loaded."""
    def load() -> AudioModel:
        from safetensors.torch import load_file

        model = build()
        path = WEIGHTS_DIR / weights
        try:
            model.load_state_dict(load_file(path))  # a missing file raises OSError
        except (OSError, RuntimeError) as exc:
            raise ModelError(f"{path}: cannot load weights for {weights!r} ({exc})") from None
        return model
    return load


def _seeded(build: Callable[[], AudioModel]) -> Callable[[], AudioModel]:
    """``build`` with random weights, the same every time (seed ``RANDOM_SEED``)."""
    def load() -> AudioModel:
        import torch

        with torch.random.fork_rng():
            torch.manual_seed(RANDOM_SEED)
            return build()
    return load


def _musicnn(labels: str) -> Callable[[], AudioModel]:
    """A builder of MusiCNN with the tags of ``labels`` ("MSD_LABELS" or "MTT_LABELS")."""
    def build() -> AudioModel:
        from . import musicnn

        return musicnn.MusiCNN(musicnn.MusiCNNConfig(), getattr(musicnn, labels))
    return build


def _descriptors() -> AudioModel:
    from .descriptors import DescriptorModel

    return DescriptorModel()


def _library_default() -> AudioModel:
    from .fused import FusedModel

    return FusedModel([load_model(n) for n, _ in LIBRARY_MEMBERS], [w for _, w in LIBRARY_MEMBERS])


# The library default: MSD's and MTT's penultimate layers together, MSD counting 0.6
# and MTT 0.4. Chosen on both labelled corpora at once (docs/benchmarks.md, "Similarity
# quality"): MSD alone finds genre (gtzan-dev), MTT alone production and timbre
# (soundtracks); together they are at least as good as either on both.
LIBRARY_MEMBERS = (("msd-musicnn", 0.6), ("mtt-musicnn", 0.4))

REGISTRY: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        ModelSpec("msd-musicnn", _shipped(_musicnn("MSD_LABELS"), "msd-musicnn.safetensors"),
                  "MusiCNN trained on the Million Song Dataset's top 50 Last.fm tags (analyze's default)"),
        ModelSpec("mtt-musicnn", _shipped(_musicnn("MTT_LABELS"), "mtt-musicnn.safetensors"),
                  "MusiCNN trained on MagnaTagATune's top 50 tags"),
        ModelSpec("msd-mtt-musicnn", _library_default,
                  "MSD- and MTT-MusiCNN together: both embeddings (weighted 0.6 / 0.4) and both tag sets "
                  "(the library's default)"),
        ModelSpec("random-musicnn", _seeded(_musicnn("MSD_LABELS")),
                  "MusiCNN with random weights (seeded), a baseline"),
        ModelSpec("descriptors", _shipped(_descriptors, "descriptors.safetensors"),
                  "handcrafted features (chroma, spectral shape, MFCC, tempo), standardized; no network"),
    )
}
DEFAULT_MODEL = "msd-musicnn"  # analyze's default
DEFAULT_LIBRARY_MODEL = "msd-mtt-musicnn"
# Defaults of earlier versions: a library built with one of these (and no --model) is
# told that the default changed and how to re-analyse it.
FORMER_LIBRARY_DEFAULTS = ("mtt-musicnn",)
RANDOM_SEED = 0


def is_model_path(name: str) -> bool:
    """Whether ``name`` is a trained model's file, or a run directory holding one."""
    path = Path(name)
    return path.is_file() or (path / MODEL_FILE).is_file()


def load_model(name: str = DEFAULT_MODEL, device: str = "cpu") -> AudioModel:
    """Build a registered model, or a trained one from its file or run directory, in eval
    mode with its weights loaded, on ``device`` (checked by :func:`torch_device`).

    Raises
    ------
    ModelError
        Unknown name, or its weights file is missing or does not fit the network.
    """
    spec = REGISTRY.get(name)
    if spec is None:
        if not is_model_path(name):
            raise ModelError(f"unknown model {name!r}; known: {', '.join(sorted(REGISTRY))}, "
                             "or a trained model's file or run directory")
        from . import trained

        model = trained.load(name)
    else:
        model = spec.build()
        model.name = name
    return model.eval().to(torch_device(device))


def torch_device(name: str):
    """The ``torch.device`` called ``name`` ("cpu", "cuda", "cuda:1", "mps").

    Raises ParameterError when it is not a device name or this machine has no such device.
    """
    import torch

    try:
        device = torch.device(name)
    except RuntimeError:
        device = torch.device("meta")  # refused below, as any other device type soundalike does not run on
    if device.type == "cuda":
        if not torch.cuda.is_available():
            build = "a CPU-only build" if torch.version.cuda is None else f"built for CUDA {torch.version.cuda}"
            raise ParameterError(f"device {name!r}: PyTorch sees no CUDA GPU on this machine "
                                 f"(torch {torch.__version__}, {build})")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ParameterError(f"device {name!r}: this machine has {torch.cuda.device_count()} CUDA GPU(s), "
                                 f"numbered from 0")
    elif device.type == "mps" and not torch.backends.mps.is_available():
        raise ParameterError(f"device {name!r}: PyTorch sees no Apple GPU (MPS) on this machine")
    elif device.type not in ("cpu", "cuda", "mps"):
        raise ParameterError(f"unknown device {name!r}: soundalike runs its networks on cpu, cuda, cuda:N or mps")
    return device


# classes that need PyTorch: imported on first use (see the module docstring)
_LAZY = {"AudioModel": "base", "Outputs": "base", "WindowSpec": "base", "FusedModel": "fused",
         "MusiCNN": "musicnn", "MusiCNNConfig": "musicnn", "MSD_LABELS": "musicnn", "MTT_LABELS": "musicnn",
         "DescriptorModel": "descriptors"}


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["AudioModel", "DEFAULT_LIBRARY_MODEL", "DEFAULT_MODEL", "FORMER_LIBRARY_DEFAULTS", "FusedModel",
           "LIBRARY_MEMBERS", "MODEL_FILE", "ModelSpec", "Outputs", "REGISTRY", "WindowSpec", "is_model_path",
           "load_model", "MusiCNN", "MusiCNNConfig"]
