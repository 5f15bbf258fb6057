"""Trained models on disk: one safetensors file holds the weights and everything needed to
rebuild the network (architecture, hyper-parameters, labels, task), so a model is
rebuilt from its file alone. No pickle."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from safetensors import SafetensorError

from ..errors import ModelError
from . import MODEL_FILE

if TYPE_CHECKING:
    from .base import AudioModel

METADATA_KEY = "soundalike.model"
TASKS = ("classes", "tags", "vector")


def _network(name: str) -> Callable[..., AudioModel]:
    """The constructor of ``networks.<name>``, importing PyTorch only when called."""
    def construct(n_outputs: int, **params) -> AudioModel:
        from . import networks

        return getattr(networks, name)(n_outputs, **params)
    return construct


def _musicnn(n_outputs: int, **params) -> AudioModel:
    from .musicnn import MusiCNN, MusiCNNConfig

    params = {k: tuple(v) if isinstance(v, list) else v for k, v in params.items()}
    return MusiCNN(MusiCNNConfig(n_classes=n_outputs, **params))


def _probe(n_outputs: int, *, embedder: str, **params) -> AudioModel:
    from . import load_model
    from .networks import Probe

    return Probe(n_outputs, embedder=load_model(embedder), **params)


ARCHITECTURES: dict[str, Callable[..., AudioModel]] = {
    "raw-cnn": _network("RawCNN"),
    "spec-cnn": _network("SpecCNN"),
    "short-chunk-resnet": _network("ShortChunkResNet"),
    "musicnn": _musicnn,
    "probe": _probe,
}


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """What rebuilds a trained network: ``params`` are its constructor's keyword arguments;
    ``task`` is ``classes`` (softmax), ``tags`` (sigmoid) or ``vector`` (regression to a
    ``vector_dim``-d vector, e.g. Track2Vec)."""

    architecture: str
    labels: tuple[str, ...]
    task: str
    params: dict = dataclasses.field(default_factory=dict)
    vector_dim: int = 0

    def __post_init__(self):
        if self.architecture not in ARCHITECTURES:
            raise ModelError(f"unknown architecture {self.architecture!r}; known: {', '.join(ARCHITECTURES)}")
        if self.task not in TASKS:
            raise ModelError(f"unknown task {self.task!r}; known: {', '.join(TASKS)}")

    @property
    def n_outputs(self) -> int:
        return self.vector_dim if self.task == "vector" else len(self.labels)


def build(config: ModelConfig) -> AudioModel:
    """A freshly initialised network for ``config`` (uses torch's global random state)."""
    try:
        network = ARCHITECTURES[config.architecture](config.n_outputs, **config.params)
    except TypeError as exc:
        raise ModelError(f"bad hyper-parameters for {config.architecture}: {exc}") from None
    if config.task == "vector":
        from .networks import VectorRegressor

        network = VectorRegressor(network, config.vector_dim)
    else:
        network.labels = tuple(config.labels)
        network.multilabel = config.task == "tags"
    network.model_config = config
    return network


def save(model: AudioModel, path: Path) -> None:
    """Write ``model`` (built by :func:`build`) and its config to ``path``, atomically."""
    from safetensors.torch import save_file

    metadata = {METADATA_KEY: json.dumps(dataclasses.asdict(model.model_config))}
    tmp = path.with_suffix(".tmp")
    save_file({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}, tmp, metadata=metadata)
    tmp.replace(path)


def read_config(path: Path) -> ModelConfig:
    from safetensors import safe_open

    try:
        with safe_open(path, "numpy") as f:
            record = json.loads((f.metadata() or {})[METADATA_KEY])
    except (OSError, SafetensorError, KeyError, ValueError) as exc:
        raise ModelError(f"{path}: not a soundalike model file ({exc.__class__.__name__}: {exc})") from None
    record["labels"] = tuple(record["labels"])
    return ModelConfig(**record)


def load(path: str | Path) -> AudioModel:
    """The trained model in ``path`` (a model file, or a run directory holding one), in eval mode."""
    from safetensors.torch import load_file

    path = Path(path)
    if path.is_dir():
        path = path / MODEL_FILE
    model = build(read_config(path))
    try:
        model.load_state_dict(load_file(path))
    except RuntimeError as exc:
        raise ModelError(f"{path}: weights do not fit the network ({exc})") from None
    model.name = str(path.resolve())
    return model.eval()
