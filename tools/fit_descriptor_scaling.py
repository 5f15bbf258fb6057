"""Fit the per-feature mean and scale of the ``descriptors`` model on a music corpus.

    python tools/fit_descriptor_scaling.py CORPUS_DIR

Computes the descriptors of every 3 s patch of every audio file under CORPUS_DIR
(the soundtracks corpus of ../shared/data/fetch-soundtracks was used for the shipped
file) and writes src/soundalike/models/weights/descriptors.safetensors. The scale is
the standard deviation, floored at 1e-6 of the largest one.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file
from tqdm import tqdm

from soundalike import analysis
from soundalike.library.indexer import find_audio
from soundalike.models.descriptors import DescriptorModel

OUT = Path(__file__).resolve().parents[1] / "src" / "soundalike" / "models" / "weights" / "descriptors.safetensors"


def main() -> int:
    corpus = Path(sys.argv[1])
    model = DescriptorModel()
    patches = []
    for f in tqdm(list(find_audio([corpus])), unit="file"):
        try:
            patches.append(analysis.analyze(f.path, model).embeddings)  # mean 0, scale 1: raw values
        except Exception as exc:  # a corpus file that cannot be read is reported and skipped
            print(f"skipped {f.path}: {exc}", file=sys.stderr)
    values = np.concatenate(patches)
    std = values.std(axis=0)
    state = {"mean": torch.from_numpy(values.mean(axis=0).astype(np.float32)),
             "scale": torch.from_numpy(np.maximum(std, 1e-6 * std.max()).astype(np.float32))}
    save_file(state, str(OUT), metadata={"source": f"descriptors of {len(values)} patches of {len(patches)} files"})
    print(f"{OUT}: fitted on {len(values)} patches of {len(patches)} files")
    return 0


if __name__ == "__main__":
    sys.exit(main())
