"""What defines a training run, without PyTorch (the command line builds its options from it)."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

from ..errors import ParameterError
from ..models import trained as model_files

MODELS = {  # name -> what it is (the command line's help)
    "raw-cnn": "1-D CNN on the waveform (Dieleman & Schrauwen 2014)",
    "spec-cnn": "VGG-like 2-D CNN on log-mel spectrograms",
    "short-chunk-resnet": "short-chunk CNN with residual blocks (Won et al. 2020)",
    "musicnn": "MusiCNN, from scratch or fine-tuned from shipped weights (--init)",
    "probe": "a head trained on a frozen --embedder",
    "track2vec": "word2vec over playlists, then an audio network (--backbone) regressing the vectors",
}
INITS = ("msd-musicnn", "mtt-musicnn")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a run; saved in its checkpoint."""

    data: str  # KIND:PATH
    model: str
    params: dict = dataclasses.field(default_factory=dict)  # the network's hyper-parameters
    init: str | None = None  # musicnn: start from shipped weights
    embedder: str | None = None  # probe: the frozen embedder
    backbone: str = "spec-cnn"  # track2vec: the audio network that predicts the vectors
    vector_dim: int = 64  # track2vec: word2vec size
    seed: int = 0
    epochs: int = 30
    patience: int = 5  # epochs without a better validation metric before stopping
    batch_size: int = 16
    crops_per_track: int = 4  # training crops per track per epoch
    eval_crops: int = 8  # crops per track averaged at validation and test
    lr: float = 1e-3
    weight_decay: float = 1e-4
    max_seconds: float | None = None  # decode at most this much of each track (its middle)
    cache: str | None = None  # folder of the decoded-audio cache; default: default_cache()

    def __post_init__(self):
        if self.model not in MODELS:
            raise ParameterError(f"model must be one of {', '.join(MODELS)}, got {self.model!r}")
        if self.init is not None and (self.model != "musicnn" or self.init not in INITS):
            raise ParameterError(f"--init {self.init!r}: only musicnn starts from shipped weights ({', '.join(INITS)})")
        if (self.model == "probe") != (self.embedder is not None):
            raise ParameterError("a probe needs --embedder, and only a probe takes one")
        if self.backbone not in model_files.ARCHITECTURES or self.backbone == "probe":
            raise ParameterError(f"backbone must be a trainable network, got {self.backbone!r}")
        for name in ("epochs", "batch_size", "crops_per_track", "eval_crops"):
            if getattr(self, name) < 1:
                raise ParameterError(f"{name} must be at least 1, got {getattr(self, name)}")


def default_cache() -> Path:
    """$SOUNDALIKE_CACHE, or the user's cache directory."""
    import platformdirs

    return Path(os.environ.get("SOUNDALIKE_CACHE") or platformdirs.user_cache_dir("soundalike")) / "audio"
