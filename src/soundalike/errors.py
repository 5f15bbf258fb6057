"""The one exception hierarchy of soundalike.

Every message names the offending value (a parameter and its value, or a file and
the cause), so that a log line alone tells what went wrong.
"""

from __future__ import annotations

import os


class SoundalikeError(Exception):
    """Root of every error soundalike raises on purpose."""


class ParameterError(SoundalikeError, ValueError):
    """A parameter has a value outside its allowed range or set."""


class MediaError(SoundalikeError):
    """A file cannot be read or decoded as audio.

    Parameters
    ----------
    path : str or os.PathLike
        The file.
    reason : str
        The cause, in a few words ("no audio stream", "file not found", ...).
    """

    def __init__(self, path: str | os.PathLike, reason: str):
        self.path = os.fspath(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


class ModelError(SoundalikeError):
    """A model name is unknown, or its weights or checkpoint cannot be loaded."""
