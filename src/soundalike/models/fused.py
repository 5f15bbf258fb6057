"""Several networks listening to the same windows, as one model.

The embedding is the networks' embeddings side by side (one block each, with a
weight each: see :class:`soundalike.analysis.Space`, which centres and normalises
every block on its own before they are compared). The tags are all of theirs; a tag
that more than one network predicts (MSD's and MTT's "rock", say) is their mean.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ..errors import ModelError
from .base import AudioModel, Outputs


class FusedModel(AudioModel):
    """``members`` run on the same waveform windows (B, window.length).

    Outputs: logits (B, sum of the members' outputs), embedding (B, sum of their
    embedding sizes); :meth:`probabilities` maps the logits to (B, len(labels)).
    """

    def __init__(self, members: Sequence[AudioModel], weights: Sequence[float]):
        super().__init__()
        if len(members) < 2 or len(weights) != len(members):
            raise ModelError(f"a fused model needs two or more members and a weight each, "
                             f"got {len(members)} members and {len(weights)} weights")
        if any(w <= 0 for w in weights):
            raise ModelError(f"member weights must be positive, got {list(weights)}")
        if len({m.window for m in members}) != 1:
            raise ModelError("fused models must cut tracks into the same windows: "
                             + ", ".join(f"{getattr(m, 'name', type(m).__name__)} {m.window}" for m in members))
        self.members = torch.nn.ModuleList(members)
        self.window = members[0].window
        self.embedding_dim = sum(m.embedding_dim for m in members)
        self._blocks = tuple(b for m in members for b in m.embedding_blocks)
        self._weights = tuple(float(w) * mw for m, w in zip(members, weights) for mw in m.block_weights)
        self.multilabel = True
        names: list[str] = []
        for m in members:
            names += [n for n in m.labels if n.casefold() not in {x.casefold() for x in names}]
        self.labels = tuple(names)
        # (all members' outputs, labels): each column averages the outputs bearing its name
        merge = torch.zeros(sum(len(m.labels) for m in members), len(names))
        row = 0
        for m in members:
            for n in m.labels:
                merge[row, [x.casefold() for x in names].index(n.casefold())] = 1.0
                row += 1
        self.register_buffer("merge", merge / merge.sum(dim=0).clamp(min=1), persistent=False)

    @property
    def embedding_blocks(self) -> tuple[int, ...]:
        return self._blocks

    @property
    def block_weights(self) -> tuple[float, ...]:
        return self._weights

    def features(self, waveform: torch.Tensor) -> Outputs:
        outputs = [m.features(waveform) for m in self.members]
        return Outputs(torch.cat([o.logits for o in outputs], dim=1), torch.cat([o.embedding for o in outputs], dim=1))

    def probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        parts = torch.split(logits, [len(m.labels) for m in self.members], dim=1)
        probs = torch.cat([m.probabilities(p) for m, p in zip(self.members, parts)], dim=1)
        return probs @ self.merge
