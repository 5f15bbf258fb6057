"""Training toolkit: datasets in, trained networks out, ready for ``analyze`` and ``index``."""

from .report import report
from .trainer import MODELS, Run, TrainConfig, train

__all__ = ["MODELS", "Run", "TrainConfig", "report", "train"]
