"""Track2Vec: word2vec over playlists, tracks as words (as Deej-A.I. did), with gensim.

Tracks that share playlists get nearby vectors; an audio network then learns to
predict a track's vector from its sound (:mod:`.trainer`, task ``vector``).
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..analysis import normalize


def _stable_hash(text: str) -> int:
    """gensim seeds each word's initial vector with a hash of it; Python's own string
    hash changes from run to run, so a seeded fit would not repeat without this."""
    return zlib.crc32(text.encode())


def fit(playlists: Sequence[Sequence[str]], *, dim: int = 64, window: int = 5, epochs: int = 50,
        seed: int = 0) -> dict[str, np.ndarray]:
    """Unit Track2Vec vectors (dim,) float32 for every track key in ``playlists``.

    Skip-gram with negative sampling, one worker thread so that a seed repeats exactly.
    """
    from gensim.models import Word2Vec

    model = Word2Vec(sentences=[list(p) for p in playlists], vector_size=dim, window=window, min_count=1, sg=1,
                     negative=5, sample=0, epochs=epochs, seed=seed, workers=1, hashfxn=_stable_hash)
    vectors = normalize(model.wv.vectors)
    return {key: vectors[i] for i, key in enumerate(model.wv.index_to_key)}


def save(vectors: dict[str, np.ndarray], path: Path) -> None:
    keys = sorted(vectors)
    np.savez(path, keys=np.array(keys), vectors=np.stack([vectors[k] for k in keys]))


def load(path: Path) -> dict[str, np.ndarray]:
    with np.load(path) as f:
        return dict(zip(f["keys"].tolist(), f["vectors"]))
