"""Networks to train: raw-waveform 1-D CNN, spectrogram 2-D CNN, short-chunk ResNet, probe.

Every class takes ``n_outputs`` and its hyper-parameters as keyword arguments, gives
logits from :meth:`forward`, and its penultimate layer as the embedding. All read
16 kHz waveform windows of ``window.length`` samples; the spectrogram ones compute
MusiCNN's log-mel front end inside the model.
"""

from __future__ import annotations

import torch
from torch import nn

from ..features import LogMel, LogMelConfig
from .base import AudioModel, Outputs, WindowSpec

SAMPLE_RATE = 16_000


def _window(length: int) -> WindowSpec:
    return WindowSpec(sample_rate=SAMPLE_RATE, length=length, hop=length, pad=0)


class _Head(nn.Module):
    """Pooled features -> dense embedding (ReLU, dropout) -> logits."""

    def __init__(self, in_features: int, embedding_dim: int, n_outputs: int, dropout: float):
        super().__init__()
        self.dense = nn.Sequential(nn.Linear(in_features, embedding_dim), nn.BatchNorm1d(embedding_dim), nn.ReLU())
        self.dropout = nn.Dropout(dropout)
        self.output = nn.Linear(embedding_dim, n_outputs)

    def forward(self, pooled: torch.Tensor) -> Outputs:
        embedding = self.dense(pooled)
        return Outputs(self.output(self.dropout(embedding)), embedding)


class RawCNN(AudioModel):
    """Dieleman and Schrauwen (2014), "End-to-end learning for music audio": a strided
    first convolution on raw samples (frame = stride = ``frame`` samples), then 1-D
    convolutions and max pooling over time, global mean+max pooling, a dense layer.
    Input: ``seconds`` of 16 kHz audio."""

    def __init__(self, n_outputs: int, *, seconds: float = 3.0, frame: int = 256, channels: int = 32,
                 kernel: int = 8, layers: int = 2, embedding_dim: int = 100, dropout: float = 0.5):
        super().__init__()
        self.window = _window(int(seconds * SAMPLE_RATE))
        self.embedding_dim = embedding_dim
        blocks: list[nn.Module] = [nn.Conv1d(1, channels, frame, stride=frame), nn.BatchNorm1d(channels), nn.ReLU()]
        for _ in range(layers):
            blocks += [nn.Conv1d(channels, channels, kernel, padding=kernel // 2), nn.BatchNorm1d(channels), nn.ReLU(),
                       nn.MaxPool1d(4)]
        self.convs = nn.Sequential(*blocks)
        self.head = _Head(2 * channels, embedding_dim, n_outputs, dropout)

    def features(self, waveform: torch.Tensor) -> Outputs:
        x = self.convs(waveform.unsqueeze(1))  # (B, channels, time)
        return self.head(torch.cat([x.mean(-1), x.amax(-1)], dim=1))


class SpecCNN(AudioModel):
    """A VGG-like 2-D CNN on log-mel slices, the kind the seed projects used for genres and
    instruments: ``blocks`` of 3x3 convolution, batch norm, ReLU and 2x2 max pooling
    (channels doubling from ``channels`` up to 8x), global mean+max pooling, dense."""

    def __init__(self, n_outputs: int, *, seconds: float = 3.0, n_mels: int = 96, channels: int = 32,
                 blocks: int = 4, embedding_dim: int = 128, dropout: float = 0.5):
        super().__init__()
        front = LogMelConfig(n_mels=n_mels)
        self.window = _window(int(seconds * SAMPLE_RATE))
        self.embedding_dim = embedding_dim
        self.logmel = LogMel(front)
        self.input_norm = nn.BatchNorm2d(1)
        layers: list[nn.Module] = []
        width_in = 1
        for i in range(blocks):
            width = channels * 2 ** min(i, 3)
            layers += [nn.Conv2d(width_in, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(), nn.MaxPool2d(2)]
            width_in = width
        self.convs = nn.Sequential(*layers)
        self.head = _Head(2 * width_in, embedding_dim, n_outputs, dropout)

    def features(self, waveform: torch.Tensor) -> Outputs:
        x = self.convs(self.input_norm(self.logmel(waveform).unsqueeze(1)))  # (B, C, frames, mels)
        x = x.flatten(2)
        return self.head(torch.cat([x.mean(-1), x.amax(-1)], dim=1))


class _Residual(nn.Module):
    """Two 3x3 convolutions with a strided shortcut (Won et al. 2020's Res_2d)."""

    def __init__(self, width_in: int, width: int, stride: int = 2):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(width_in, width, 3, stride=stride, padding=1), nn.BatchNorm2d(width), nn.ReLU(),
            nn.Conv2d(width, width, 3, padding=1), nn.BatchNorm2d(width))
        self.shortcut = nn.Sequential(nn.Conv2d(width_in, width, 3, stride=stride, padding=1), nn.BatchNorm2d(width))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.body(x) + self.shortcut(x))


class ShortChunkResNet(AudioModel):
    """Short-chunk CNN with residual blocks (Won, Ferraro, Bogdanov and Serra, 2020,
    "Evaluation of CNN-based automatic music tagging models"): 3.69 s of audio, 128 mel
    bands, seven strided residual blocks (``channels`` doubling twice to 4x), max over
    what is left of time and frequency, dense. The paper's width is ``channels=128``."""

    def __init__(self, n_outputs: int, *, seconds: float = 3.69, n_mels: int = 128, channels: int = 128,
                 blocks: int = 7, embedding_dim: int | None = None, dropout: float = 0.5):
        super().__init__()
        self.window = _window(int(seconds * SAMPLE_RATE))
        widths = [channels * (1 if i < 2 else 2 if i < blocks - 1 else 4) for i in range(blocks)]
        self.embedding_dim = embedding_dim or widths[-1]
        self.logmel = LogMel(LogMelConfig(n_mels=n_mels))
        self.input_norm = nn.BatchNorm2d(1)
        self.blocks = nn.Sequential(*[_Residual(w_in, w) for w_in, w in zip([1] + widths[:-1], widths)])
        self.head = _Head(widths[-1], self.embedding_dim, n_outputs, dropout)

    def features(self, waveform: torch.Tensor) -> Outputs:
        x = self.blocks(self.input_norm(self.logmel(waveform).unsqueeze(1)))
        return self.head(x.flatten(2).amax(-1))


class Probe(AudioModel):
    """A linear (``hidden=0``) or one-hidden-layer head on a frozen pretrained embedder.

    The embedding is the hidden layer, or the embedder's own embedding for a linear
    head. :meth:`frozen` gives the embedder's vectors so a trainer can compute them once.
    """

    def __init__(self, n_outputs: int, *, embedder: AudioModel, hidden: int = 0, dropout: float = 0.25):
        super().__init__()
        self.embedder = embedder.requires_grad_(False).eval()
        self.window = embedder.window
        width = embedder.embedding_dim
        self.embedding_dim = hidden or width
        self.hidden = nn.Sequential(nn.Linear(width, hidden), nn.ReLU(), nn.Dropout(dropout)) if hidden else None
        self.output = nn.Linear(self.embedding_dim, n_outputs)

    def train(self, mode: bool = True):
        super().train(mode)
        self.embedder.eval()  # frozen: batch norm statistics and dropout stay as trained
        return self

    @torch.no_grad()
    def frozen(self, waveform: torch.Tensor) -> torch.Tensor:
        """The embedder's vectors (B, embedder.embedding_dim)."""
        return self.embedder.features(waveform).embedding

    def head(self, frozen: torch.Tensor) -> Outputs:
        embedding = self.hidden(frozen) if self.hidden is not None else frozen
        return Outputs(self.output(embedding), embedding)

    def features(self, waveform: torch.Tensor) -> Outputs:
        return self.head(self.frozen(waveform))


class VectorRegressor(AudioModel):
    """A network whose outputs are a vector to regress (a Track2Vec embedding, as in
    Deej-A.I.), not tags: the predicted vector is the embedding and there are no tags."""

    def __init__(self, network: AudioModel, dim: int):
        super().__init__()
        self.network = network
        self.window = network.window
        self.embedding_dim = dim
        self.labels = ()

    def features(self, waveform: torch.Tensor) -> Outputs:
        vector = self.network(waveform)
        return Outputs(vector[:, :0], vector)
