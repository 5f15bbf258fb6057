"""Training toolkit: datasets in, trained networks out, ready for ``analyze`` and ``index``.

``TrainConfig`` and ``MODELS`` come without PyTorch; ``train``, ``report`` and ``Run``
import it on first use.
"""

from .config import MODELS, TrainConfig

_LAZY = {"Run": "trainer", "train": "trainer", "report": "report"}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value  # importing the submodule .report bound its name to the module
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["MODELS", "Run", "TrainConfig", "report", "train"]
