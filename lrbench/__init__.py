"""lrbench: an evaluation harness for low-resolution face recognition.

The public API a plugin may import is what this module exports; nothing else is promised.
"""

from .data.align import AlignmentError, align_face, similarity_transform
from .data.degrade import probe_size, resize_down_up
from .data.identification_layout import IdentificationLayout
from .data.identification_layout import check_set as check_identification_set
from .data.pairs import ProtocolDefinition
from .errors import DataError, LrbenchError, NumericalError, UsageError
from .eval.checkpoints import CheckpointLayout, check_weights_file, load_weights, read_state_dict
from .hookspecs import hookimpl
from .progress import warn
from .specs import (
    ARCFACE_112x112,
    BackboneSpec,
    CropTemplate,
    DegradationSpec,
    DetectorSpec,
    Face,
    IdentificationSet,
    InputSpec,
    PairSet,
    ProtocolSpec,
    SPHEREFACE_96x112,
    TrainerSpec,
)
from .version import __version__

__all__ = [
    "ARCFACE_112x112",
    "AlignmentError",
    "SPHEREFACE_96x112",
    "BackboneSpec",
    "CheckpointLayout",
    "CropTemplate",
    "DataError",
    "DegradationSpec",
    "DetectorSpec",
    "Face",
    "IdentificationLayout",
    "IdentificationSet",
    "InputSpec",
    "LrbenchError",
    "NumericalError",
    "PairSet",
    "ProtocolDefinition",
    "ProtocolSpec",
    "TrainerSpec",
    "UsageError",
    "__version__",
    "align_face",
    "check_identification_set",
    "check_weights_file",
    "hookimpl",
    "load_weights",
    "probe_size",
    "read_state_dict",
    "resize_down_up",
    "similarity_transform",
    "warn",
]
