"""MTCNN face detector (Zhang et al., 2016): P-, R- and O-Net cascade with five landmarks, batched across images.

It reproduces facenet-pytorch 2.6.0's ``MTCNN.detect`` with its default settings and its weights (shipped in
``mtcnn_weights/``, MIT licence): LFW's shared ``landmarks.txt`` was made with that code and these weights,
so it is the reference this implementation is tested against. The steps and their arithmetic follow it:

1. P-Net on an image pyramid (scales 12/min_face_size · factor^k while the scaled short side is ≥ 12 px,
   area resampling); every window scoring ≥ the first threshold gives a box (stride 2, cell 12); NMS 0.5
   per scale, then NMS 0.7 over all scales; box regression; boxes made square.
2. R-Net on the boxes' pixels (clipped to the image) area-resampled to 24×24; score > threshold; NMS 0.7;
   regression; square.
3. O-Net on 48×48 crops; score > threshold; landmarks relative to the O-Net input box; regression; NMS 0.7
   with overlap measured against the smaller box ("Min"). Faces are returned largest first.

Batching differs from facenet-pytorch only where it must: images of one size are stacked (groups per size),
NMS runs per image with ``torchvision.ops.nms`` (``batched_nms`` shifts the boxes of each image apart, which
rounds their coordinates, so a batch would not equal one image at a time), and the 24/48 px crops come from
an integral image, in one gather for all boxes, instead of one ``interpolate`` call per box (with the same
float arithmetic as ``F.interpolate(mode="area")``, so the same values). Against facenet-pytorch's own code
run on the same machine, boxes and points agree within 1e-4 px.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from lrbench import DetectorSpec, hookimpl

NETWORKS = ("pnet", "rnet", "onet")


def packaged_weights() -> Path:
    """The folder of facenet-pytorch's weights shipped inside lrbench."""
    return Path(str(resources.files("lrbench_plugins") / "mtcnn_weights"))


def build(
    weights: str | Path | None = None,
    device="cpu",
    min_face_size: int = 20,
    pnet_threshold: float = 0.6,
    rnet_threshold: float = 0.7,
    onet_threshold: float = 0.7,
    factor: float = 0.709,
):
    """The detector with the packaged weights (``weights`` None) or those in the folder ``weights``.

    Option values it cannot use are a ValueError, which lrbench reports as a usage error naming the option.
    """
    if min_face_size < 1:
        raise ValueError(f"min_face_size={min_face_size}: expected the smallest face's size in pixels, at least 1")
    if not 0 < factor < 1:
        raise ValueError(f"factor={factor}: expected the pyramid's scale step, between 0 and 1")
    thresholds = (pnet_threshold, rnet_threshold, onet_threshold)
    for name, value in zip(NETWORKS, thresholds):
        if not 0 <= value <= 1:
            raise ValueError(f"{name}_threshold={value}: expected a probability in 0…1")
    from .networks.mtcnn import mtcnn

    return mtcnn(packaged_weights() if weights is None else Path(weights).expanduser(), device, min_face_size,
                 thresholds, factor)


@hookimpl
def register_detectors(register):
    register(
        DetectorSpec(
            name="mtcnn",
            build=build,
            description="MTCNN (P-/R-/O-Net cascade, five landmarks) with facenet-pytorch's weights, batched",
            options={
                "min_face_size": 20,
                "pnet_threshold": 0.6,
                "rnet_threshold": 0.7,
                "onet_threshold": 0.7,
                "factor": 0.709,
            },
        )
    )
