"""lrbench: an evaluation harness for low-resolution face recognition.

The public API a plugin may import is what this module exports; nothing else is promised. Each name is
loaded from its module on first use (PEP 562), so ``import lrbench`` and the command line start without
torch: a plugin that imports only specs and ``hookimpl`` costs nothing until it builds a network.
"""

from __future__ import annotations

from .lazy import lazy_exports

# Public name → the module that defines it ("module:name" where the name there differs).
_EXPORTS = {
    "ARCFACE_112x112": "lrbench.specs",
    "AlignmentError": "lrbench.data.align",
    "SPHEREFACE_96x112": "lrbench.specs",
    "BackboneSpec": "lrbench.specs",
    "CheckpointLayout": "lrbench.eval.checkpoints",
    "CropTemplate": "lrbench.specs",
    "DataError": "lrbench.errors",
    "DegradationSpec": "lrbench.specs",
    "DetectorSpec": "lrbench.specs",
    "Face": "lrbench.specs",
    "IdentificationLayout": "lrbench.data.identification_layout",
    "IdentificationSet": "lrbench.specs",
    "InputSpec": "lrbench.specs",
    "LrbenchError": "lrbench.errors",
    "NumericalError": "lrbench.errors",
    "PairSet": "lrbench.specs",
    "ProtocolDefinition": "lrbench.data.pairs",
    "ProtocolSpec": "lrbench.specs",
    "TrainerSpec": "lrbench.specs",
    "UsageError": "lrbench.errors",
    "__version__": "lrbench.version",
    "align_face": "lrbench.data.align",
    "check_identification_set": "lrbench.data.identification_layout:check_set",
    "check_weights_file": "lrbench.eval.checkpoints",
    "hookimpl": "lrbench.hookspecs",
    "load_weights": "lrbench.eval.checkpoints",
    "probe_size": "lrbench.data.degrade",
    "read_state_dict": "lrbench.eval.checkpoints",
    "resize_down_up": "lrbench.data.degrade",
    "similarity_transform": "lrbench.data.align",
    "warn": "lrbench.progress",
}

__all__ = list(_EXPORTS)


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
