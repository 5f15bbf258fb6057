"""soundalike: recommend music by how it sounds."""

from .analysis import Analysis, analyze, iter_windows
from .audio import TrackMetadata, load, read_metadata, stream
from .errors import MediaError, ModelError, ParameterError, SoundalikeError
from .models import DEFAULT_MODEL, REGISTRY, load_model

__version__ = "0.2.0"

__all__ = ["Analysis", "DEFAULT_MODEL", "MediaError", "ModelError", "ParameterError", "REGISTRY",
           "SoundalikeError", "TrackMetadata", "analyze", "iter_windows", "load", "load_model",
           "read_metadata", "stream"]
