"""The model registry: a name maps to a builder, its labels and its shipped weights."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

from safetensors.torch import load_file

from ..errors import ModelError
from .base import AudioModel, Outputs, WindowSpec
from .descriptors import DescriptorModel
from . import trained
from .musicnn import MSD_LABELS, MTT_LABELS, MusiCNN, MusiCNNConfig

WEIGHTS_DIR = Path(__file__).parent / "weights"


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """A registered model: how to build it and which weights file (if any) it loads."""

    name: str
    build: Callable[[], AudioModel]
    weights: str | None
    description: str


REGISTRY: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        ModelSpec("msd-musicnn", lambda: MusiCNN(MusiCNNConfig(), MSD_LABELS), "msd-musicnn.safetensors",
                  "MusiCNN trained on the Million Song Dataset's top 50 Last.fm tags (default)"),
        ModelSpec("mtt-musicnn", lambda: MusiCNN(MusiCNNConfig(), MTT_LABELS), "mtt-musicnn.safetensors",
                  "MusiCNN trained on MagnaTagATune's top 50 tags"),
        ModelSpec("random-musicnn", lambda: MusiCNN(MusiCNNConfig(), MSD_LABELS), None,
                  "MusiCNN with random weights (seeded), a baseline"),
        ModelSpec("descriptors", DescriptorModel, "descriptors.safetensors",
                  "handcrafted features (chroma, spectral shape, MFCC, tempo), standardized; no network"),
    )
}
DEFAULT_MODEL = "msd-musicnn"  # analyze's default
# The library's default: best on the soundtracks evaluation (docs/benchmarks.md), and
# its tags (piano, electronic, guitar, vocals...) are the ones people search a library by.
DEFAULT_LIBRARY_MODEL = "mtt-musicnn"
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
    if spec.weights is None:
        import torch

        with torch.random.fork_rng():
            torch.manual_seed(RANDOM_SEED)
            model = spec.build()
    else:
        model = spec.build()
        path = WEIGHTS_DIR / spec.weights
        try:
            model.load_state_dict(load_file(path))  # a missing file raises OSError
        except (OSError, RuntimeError) as exc:
            raise ModelError(f"{path}: cannot load weights for {name!r} ({exc})") from None
    model.name = name
    return model.eval()


__all__ = ["AudioModel", "DEFAULT_LIBRARY_MODEL", "DEFAULT_MODEL", "ModelSpec", "Outputs", "REGISTRY", "WindowSpec",
           "load_model", "MusiCNN", "MusiCNNConfig"]
