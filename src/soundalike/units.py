"""Quantities written for people."""

from __future__ import annotations


def human_size(n_bytes: int) -> str:
    """A size in bytes as people read it: "812 bytes", "3.4 KiB", "812.0 MiB", "1.2 GiB"."""
    if n_bytes < 1024:
        return f"{n_bytes} bytes"
    size = float(n_bytes)
    for unit in ("KiB", "MiB", "GiB", "TiB"):
        size /= 1024
        if size < 1024:
            break
    return f"{size:.1f} {unit}"
