"""Export the catalogue for other tools: NumPy archive or CSV."""

from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np

from ..errors import ParameterError

FIELDS = ("artist", "title", "album", "genre")


def export(library, out: str | os.PathLike) -> int:
    """Write every track's id, path, metadata, vector and tag probabilities to ``out``.

    The vectors are those similarity compares: unit vectors in the library's space
    (centred on its mean, see :attr:`soundalike.library.Library.space`), so a dot
    product of two of them is the cosine soundalike ranks by.

    ``.npz``: arrays ``ids`` (n,), ``paths``, ``artist``, ``title``, ``album``, ``genre``
    (n,) strings, ``duration`` (n,) seconds (NaN unknown), ``vectors`` (n, d),
    ``tags`` (n, n_tags) and ``tag_names`` (n_tags,). ``.csv``: one row per track,
    columns id, path, metadata, ``tag:<name>`` probabilities, then ``v0``... the vector.
    Returns the number of tracks.
    """
    out = Path(out)
    if out.suffix.lower() not in (".npz", ".csv"):
        raise ParameterError(f"export file must end in .npz or .csv, got {out.name!r}")
    catalogue = library.catalogue
    tracks = catalogue.tracks()
    ids = np.array([t.id for t in tracks], dtype=np.int64)
    vectors = library.vectors(ids) if len(ids) else np.zeros((0, 0), np.float32)
    _, tags = catalogue.arrays("tags", ids)
    names = catalogue.tag_names
    if out.suffix.lower() == ".npz":
        columns = {f: np.array([getattr(t, f) or "" for t in tracks], dtype=str) for f in FIELDS}
        np.savez_compressed(out, ids=ids, paths=np.array([t.path for t in tracks], dtype=str),
                            duration=np.array([t.duration if t.duration is not None else np.nan for t in tracks]),
                            vectors=vectors, tags=tags, tag_names=np.array(names, dtype=str), **columns)
        return len(tracks)
    with open(out, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        dim = vectors.shape[1] if len(tracks) else 0
        writer.writerow(["id", "path", *FIELDS, "duration", *(f"tag:{n}" for n in names),
                         *(f"v{i}" for i in range(dim))])
        for t, v, p in zip(tracks, vectors, tags):
            writer.writerow([t.id, t.path, *(getattr(t, fld) or "" for fld in FIELDS),
                             "" if t.duration is None else f"{t.duration:.3f}",
                             *(f"{x:.5f}" for x in p), *(f"{x:.6g}" for x in v)])
    return len(tracks)
