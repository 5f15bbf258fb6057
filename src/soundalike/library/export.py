"""Export the catalogue for other tools: NumPy archive or CSV."""

from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np

from ..errors import ParameterError
from ..musical import UNKNOWN

FIELDS = ("artist", "title", "album", "genre")
MEASURE_NUMBERS = ("bpm", "bpm_confidence", "key_confidence", "loudness", "energy")
MEASURE_NAMES = ("key", "camelot")
MEASURES = ("bpm", "bpm_confidence", "key", "camelot", "key_confidence", "loudness", "energy")  # CSV order


def export(library, out: str | os.PathLike) -> int:
    """Write every track's id, path, metadata, vector and tag probabilities to ``out``.

    The vectors are those similarity compares: unit vectors in the library's space
    (centred on its mean, see :attr:`soundalike.library.Library.space`), so a dot
    product of two of them is the cosine soundalike ranks by.

    ``.npz``: arrays ``ids`` (n,), ``paths``, ``artist``, ``title``, ``album``, ``genre``
    (n,) strings, ``duration`` (n,) seconds (NaN unknown), ``vectors`` (n, d),
    ``tags`` (n, n_tags), ``tag_names`` (n_tags,), and the measures (n,) (see
    :mod:`soundalike.musical`): ``bpm``, ``bpm_confidence``, ``key_confidence``,
    ``loudness`` (LUFS), ``energy`` (NaN unknown), ``key`` ("A minor") and ``camelot``
    ("8A") strings ("" unknown). ``.csv``: one row per track, columns id, path,
    metadata, the measures, ``tag:<name>`` probabilities, then ``v0``... the vector.
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
    measured = catalogue.musical(ids)
    measures = [measured.get(int(i), UNKNOWN).as_dict() for i in ids]
    if out.suffix.lower() == ".npz":
        columns = {f: np.array([getattr(t, f) or "" for t in tracks], dtype=str) for f in FIELDS}
        columns.update({f: np.array([m[f] or "" for m in measures], dtype=str) for f in MEASURE_NAMES})
        columns.update({f: np.array([np.nan if m[f] is None else m[f] for m in measures], dtype=np.float64)
                        for f in MEASURE_NUMBERS})
        np.savez_compressed(out, ids=ids, paths=np.array([t.path for t in tracks], dtype=str),
                            duration=np.array([t.duration if t.duration is not None else np.nan for t in tracks]),
                            vectors=vectors, tags=tags, tag_names=np.array(names, dtype=str), **columns)
        return len(tracks)
    with open(out, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        dim = vectors.shape[1] if len(tracks) else 0
        writer.writerow(["id", "path", *FIELDS, "duration", *MEASURES, *(f"tag:{n}" for n in names),
                         *(f"v{i}" for i in range(dim))])
        for t, m, v, p in zip(tracks, measures, vectors, tags):
            writer.writerow([t.id, t.path, *(getattr(t, fld) or "" for fld in FIELDS),
                             "" if t.duration is None else f"{t.duration:.3f}",
                             *("" if m[f] is None else m[f] for f in MEASURES),
                             *(f"{x:.5f}" for x in p), *(f"{x:.6g}" for x in v)])
    return len(tracks)
