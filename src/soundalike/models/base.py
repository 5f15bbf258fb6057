"""What every soundalike network shares: its input window and its outputs."""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import torch
from torch import nn


@dataclasses.dataclass(frozen=True)
class WindowSpec:
    """How a track is cut into network inputs. All lengths in samples.

    The track is padded with ``pad`` zeros at both ends, then cut into windows of
    ``length`` samples every ``hop`` samples; a window that would run past the padded
    end is dropped, except that a track too short for one window gives one window
    in which it repeats.
    """

    sample_rate: int
    length: int
    hop: int
    pad: int = 0

    @property
    def hop_seconds(self) -> float:
        return self.hop / self.sample_rate


class Outputs(NamedTuple):
    """Network outputs for a batch of windows.

    logits : (batch, n_outputs) pre-activation scores
    embedding : (batch, n_embedding) the penultimate layer, used as the vector
    """

    logits: torch.Tensor
    embedding: torch.Tensor


class AudioModel(nn.Module):
    """A network that takes waveform windows ``(batch, window.length)`` at ``window.sample_rate``.

    Subclasses set ``window``, ``labels``, ``embedding_dim`` and ``multilabel``
    (sigmoid outputs when True, softmax otherwise) and implement :meth:`features`.
    An embedding made of several networks' vectors side by side says so in
    ``embedding_blocks`` (their sizes) and ``block_weights`` (how much each counts
    in a similarity, see :class:`soundalike.analysis.Space`).
    """

    window: WindowSpec
    labels: tuple[str, ...]
    embedding_dim: int
    multilabel: bool = True

    @property
    def embedding_blocks(self) -> tuple[int, ...]:
        return (self.embedding_dim,)

    @property
    def block_weights(self) -> tuple[float, ...]:
        return (1.0,) * len(self.embedding_blocks)

    @property
    def device(self) -> torch.device:
        """Where the network's weights are (``load_model``'s ``device``); inputs go there."""
        for tensor in self.parameters():
            return tensor.device
        for tensor in self.buffers():
            return tensor.device
        return torch.device("cpu")

    def features(self, waveform: torch.Tensor) -> Outputs:
        raise NotImplementedError

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        return self.features(waveform).logits

    def probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        """Tag probabilities (sigmoid) or class probabilities (softmax), shape of ``logits``."""
        return torch.sigmoid(logits) if self.multilabel else torch.softmax(logits, dim=-1)
