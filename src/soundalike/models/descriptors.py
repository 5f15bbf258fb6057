"""The ``descriptors`` embedder: handcrafted features as a model, for indexing and baselines.

Each 3 s window becomes the 77 numbers of :func:`soundalike.descriptors.descriptors`,
standardized by a fixed mean and scale per feature (fitted once on the soundtracks
corpus by ``tools/fit_descriptor_scaling.py`` and shipped), so that every feature
counts in a cosine similarity whatever its unit. No tags.
"""

from __future__ import annotations

import numpy as np
import torch

from .. import descriptors
from .base import AudioModel, Outputs, WindowSpec


class DescriptorModel(AudioModel):
    """Waveform windows (B, 48000) at 16 kHz in; standardized descriptors (B, 77) out."""

    def __init__(self):
        super().__init__()
        sr = descriptors.SAMPLE_RATE
        self.window = WindowSpec(sample_rate=sr, length=3 * sr, hop=3 * sr, pad=0)
        self.labels = ()
        self.embedding_dim = len(descriptors.NAMES)
        self.register_buffer("mean", torch.zeros(self.embedding_dim))
        self.register_buffer("scale", torch.ones(self.embedding_dim))

    def raw(self, waveform: torch.Tensor) -> torch.Tensor:
        """Unstandardized descriptors (B, 77)."""
        rows = [descriptors.descriptors(w, self.window.sample_rate) for w in waveform.detach().cpu().numpy()]
        return torch.from_numpy(np.stack(rows))

    def features(self, waveform: torch.Tensor) -> Outputs:
        embedding = (self.raw(waveform).to(self.mean.device) - self.mean) / self.scale
        return Outputs(embedding.new_zeros(len(embedding), 0), embedding)
