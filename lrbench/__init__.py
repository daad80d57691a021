"""lrbench: an evaluation harness for low-resolution face recognition.

The public API a plugin may import is what this module exports; nothing else is promised.
"""

from .errors import DataError, LrbenchError, UsageError
from .hookspecs import hookimpl
from .specs import (
    ARCFACE_112x112,
    BackboneSpec,
    CropTemplate,
    DegradationSpec,
    InputSpec,
    PairSet,
    ProtocolSpec,
    SPHEREFACE_96x112,
    TrainerSpec,
)

__version__ = "0.1.0"

__all__ = [
    "ARCFACE_112x112",
    "SPHEREFACE_96x112",
    "BackboneSpec",
    "CropTemplate",
    "DataError",
    "DegradationSpec",
    "InputSpec",
    "LrbenchError",
    "PairSet",
    "ProtocolSpec",
    "TrainerSpec",
    "UsageError",
    "__version__",
    "hookimpl",
]
