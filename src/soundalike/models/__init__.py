"""The model registry: a name maps to a builder, its labels and its shipped weights."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

from safetensors.torch import load_file

from ..errors import ModelError
from .base import AudioModel, Outputs, WindowSpec
from .descriptors import DescriptorModel
from .fused import FusedModel
from . import trained
from .musicnn import MSD_LABELS, MTT_LABELS, MusiCNN, MusiCNNConfig

WEIGHTS_DIR = Path(__file__).parent / "weights"


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """A registered model: ``build`` returns it with its weights loaded."""

    name: str
    build: Callable[[], AudioModel]
    description: str


def _shipped(build: Callable[[], AudioModel], weights: str) -> Callable[[], AudioModel]:
    """``build`` with the weights of ``WEIGHTS_DIR / weights`` loaded."""
    def load() -> AudioModel:
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


# The library default: MSD's and MTT's penultimate layers together, MSD counting 0.6
# and MTT 0.4. Chosen on both labelled corpora at once (docs/benchmarks.md, "Similarity
# quality"): MSD alone finds genre (gtzan-dev), MTT alone production and timbre
# (soundtracks); together they are at least as good as either on both.
LIBRARY_MEMBERS = (("msd-musicnn", 0.6), ("mtt-musicnn", 0.4))

REGISTRY: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        ModelSpec("msd-musicnn", _shipped(lambda: MusiCNN(MusiCNNConfig(), MSD_LABELS), "msd-musicnn.safetensors"),
                  "MusiCNN trained on the Million Song Dataset's top 50 Last.fm tags (analyze's default)"),
        ModelSpec("mtt-musicnn", _shipped(lambda: MusiCNN(MusiCNNConfig(), MTT_LABELS), "mtt-musicnn.safetensors"),
                  "MusiCNN trained on MagnaTagATune's top 50 tags"),
        ModelSpec("msd-mtt-musicnn",
                  lambda: FusedModel([load_model(n) for n, _ in LIBRARY_MEMBERS], [w for _, w in LIBRARY_MEMBERS]),
                  "MSD- and MTT-MusiCNN together: both embeddings (weighted 0.6 / 0.4) and both tag sets "
                  "(the library's default)"),
        ModelSpec("random-musicnn", _seeded(lambda: MusiCNN(MusiCNNConfig(), MSD_LABELS)),
                  "MusiCNN with random weights (seeded), a baseline"),
        ModelSpec("descriptors", _shipped(DescriptorModel, "descriptors.safetensors"),
                  "handcrafted features (chroma, spectral shape, MFCC, tempo), standardized; no network"),
    )
}
DEFAULT_MODEL = "msd-musicnn"  # analyze's default
DEFAULT_LIBRARY_MODEL = "msd-mtt-musicnn"
# Defaults of earlier versions: a library built with one of these (and no --model) is
# told that the default changed and how to re-analyse it.
FORMER_LIBRARY_DEFAULTS = ("mtt-musicnn",)
RANDOM_SEED = 0


def load_model(name: str = DEFAULT_MODEL) -> AudioModel:
    """Build a registered model, or a trained one from its file or run directory, in eval
    mode with its weights loaded.

    Raises
    ------
    ModelError
        Unknown name, or its weights file is missing or does not fit the network.
    """
    spec = REGISTRY.get(name)
    if spec is None:
        if trained.is_model_path(name):
            return trained.load(name)
        raise ModelError(f"unknown model {name!r}; known: {', '.join(sorted(REGISTRY))}, "
                         "or a trained model's file or run directory")
    model = spec.build()
    model.name = name
    return model.eval()


__all__ = ["AudioModel", "DEFAULT_LIBRARY_MODEL", "DEFAULT_MODEL", "FORMER_LIBRARY_DEFAULTS", "FusedModel",
           "LIBRARY_MEMBERS", "ModelSpec", "Outputs", "REGISTRY", "WindowSpec", "load_model", "MusiCNN",
           "MusiCNNConfig"]
