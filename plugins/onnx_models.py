"""Face networks from model files: ``onnx`` (onnxruntime) and ``torchscript`` (``torch.jit.load``).

A model file carries its weights and graph but not how its crops were made, and a wrong channel order or
normalisation silently costs accuracy. So the input convention is never guessed: ``--option preset=NAME``
names a published one (PRESETS), or the name of a registered backbone whose convention an exported copy
keeps, and ``template``, ``channel_order``, ``mean``, ``std`` and ``metric`` set or override single parts.
Mean and std are in 0…255 pixel units; values in 0–1 units (ImageNet's 0.485 and 0.229, as PyTorch code
writes them) are refused with the pixel values to give instead. An ONNX graph's crop size is read from the
graph and must be the template's, and a graph that normalises its input itself (first nodes Sub, Mul, as
insightface's MXNet conversions do) is refused unless the convention hands it plain pixels (mean 0, std 1):
lrbench does not change a stated convention behind the user's back, and the manifest's input stays what
the network was fed.

onnxruntime is an optional extra (``pip install 'lrbench[onnx]'``): it is imported when an ONNX model is
built, so listing the backbones does not need it.
"""

from __future__ import annotations

import zipfile
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from lrbench import (
    ARCFACE_112x112,
    BackboneSpec,
    CropTemplate,
    DataError,
    InputSpec,
    SPHEREFACE_96x112,
    UsageError,
    hookimpl,
    registry,
)

from .onnx_graph import channel_values, in_unit_range

# facenet-pytorch (and davidsandberg/facenet, whose weights it ports) crops MTCNN's face box enlarged by a
# margin (14 px of 160) and resizes it to 160×160, with no five-point alignment; MTCNN's boxes are about 1.34×
# taller than wide, so its crops stretch faces sideways, which no similarity alignment can reproduce. These
# points are where MTCNN's own landmarks land in such crops, averaged over 200 LFW images (facenet-pytorch's
# MTCNN weights, the face nearest the centre): aligning to them gives crops of the same place and size, in a
# least-squares sense, without the stretch.
FACENET_160x160 = CropTemplate(
    "facenet-160x160",
    (160, 160),
    ((49.6, 64.1), (115.0, 62.8), (83.1, 92.2), (55.5, 118.2), (112.6, 117.2)),
)

# torchvision's ImageNet normalisation (0.485, 0.456, 0.406 and 0.229, 0.224, 0.225 of 0…1), in pixel units
IMAGENET_MEAN = tuple(255 * m for m in (0.485, 0.456, 0.406))
IMAGENET_STD = tuple(255 * s for s in (0.229, 0.224, 0.225))

# Published input conventions: (template, channel order, mean, std) applied to 0…255 pixels.
PRESETS = {
    # insightface's ArcFace model zoo (arcface_torch, buffalo_l's w600k_r50.onnx): RGB, (x - 127.5) / 127.5
    "insightface": InputSpec(ARCFACE_112x112, "RGB", mean=(127.5,) * 3, std=(127.5,) * 3),
    # AdaFace (mk-minchul/AdaFace inference.to_input: BGR, (x / 255 - 0.5) / 0.5); CVLface models likewise
    "adaface": InputSpec(ARCFACE_112x112, "BGR", mean=(127.5,) * 3, std=(127.5,) * 3),
    # SphereFace (wy1iu/sphereface, Caffe: BGR, (x - 127.5) / 128)
    "sphereface": InputSpec(SPHEREFACE_96x112, "BGR", mean=(127.5,) * 3, std=(128.0,) * 3),
    # FaceNet (facenet-pytorch InceptionResnetV1: RGB, fixed_image_standardization (x - 127.5) / 128)
    "facenet": InputSpec(FACENET_160x160, "RGB", mean=(127.5,) * 3, std=(128.0,) * 3),
    # insightface's files converted from MXNet normalise inside the graph (first nodes Sub, Mul): they take
    # 0…255 RGB pixels, as insightface's own loader gives them (model_zoo/arcface_onnx.py: mean 0, std 1)
    "insightface-mxnet": InputSpec(ARCFACE_112x112, "RGB", mean=(0.0,) * 3, std=(1.0,) * 3),
    # FaceX-Zoo (JDAI-CV/FaceX-Zoo data_processor/test_dataset.py: OpenCV's BGR, (x - 127.5) / 128)
    "facex-zoo": InputSpec(ARCFACE_112x112, "BGR", mean=(127.5,) * 3, std=(128.0,) * 3),
    # MagFace (IrvingMeng/MagFace inference/gen_feat.py: OpenCV's BGR, ToTensor and mean 0, std 1: x / 255)
    "magface": InputSpec(ARCFACE_112x112, "BGR", mean=(0.0,) * 3, std=(255.0,) * 3),
    # ImageNet's mean and std in RGB on the ArcFace crop: face models fine-tuned from ImageNet backbones
    # (torchvision, timm) with torchvision's Normalize
    "imagenet": InputSpec(ARCFACE_112x112, "RGB", mean=IMAGENET_MEAN, std=IMAGENET_STD),
}
CONVENTION_OPTIONS = {"preset": "", "template": "", "channel_order": "", "mean": "", "std": "", "metric": ""}
INSTALL = "pip install 'lrbench[onnx]' (or pip install onnxruntime; onnxruntime-gpu for CUDA)"


def registered_backbones() -> dict[str, BackboneSpec]:
    """Registered backbones other than the model-file ones: an exported copy keeps their convention."""
    return {name: found.spec for name, found in registry.collect("backbone").items() if found.spec.specialise is None}


def _templates() -> dict[str, CropTemplate]:
    templates = {spec.template.name: spec.template for spec in PRESETS.values()}
    for spec in registered_backbones().values():
        templates.setdefault(spec.input.template.name, spec.input.template)
    return templates


def _triple(name: str, text: str) -> tuple[float, float, float]:
    """``127.5`` or ``122.8,117.0,104.3``: one value per channel in the network's channel order (as InputSpec)."""
    try:
        values = tuple(float(part) for part in text.split(","))
    except ValueError:
        values = ()
    if len(values) == 1:
        values *= 3
    if len(values) != 3 or not all(np.isfinite(values)) or (name == "std" and min(values) <= 0):
        kind = "positive " if name == "std" else ""
        raise UsageError(f"--option {name}={text}: expected one {kind}number or three comma-separated")
    return values


def convention(preset: str, template: str, channel_order: str, mean: str, std: str, metric: str) -> dict[str, Any]:
    """The spec fields these options choose: ``input`` and ``metric`` (and ``flip_fusion`` from a backbone)."""
    given = {"template": template, "channel_order": channel_order, "mean": mean, "std": std}
    fields: dict[str, Any] = {}
    if preset in PRESETS:
        base = PRESETS[preset]
    elif preset:
        registered = registered_backbones()
        if preset not in registered:
            raise UsageError(
                f"--option preset={preset}: no such convention; presets: {', '.join(PRESETS)}, "
                f"or a registered backbone's: {', '.join(registered)}"
            )
        spec = registered[preset]
        base = spec.input
        fields = {"metric": spec.metric, "flip_fusion": spec.flip_fusion}
    else:
        missing = [name for name, value in given.items() if not value]
        if missing:
            raise UsageError(
                f"--option preset: the input convention is needed, as preset={'|'.join(PRESETS)} (or a registered "
                f"backbone's name), or all of template, channel_order, mean, std (missing: {', '.join(missing)})"
            )
        base = PRESETS["insightface"]  # every part is overridden below
    if template:
        templates = _templates()
        if template not in templates:
            raise UsageError(f"--option template={template}: no such template; choose one of {', '.join(templates)}")
    if channel_order and channel_order.upper() not in ("RGB", "BGR"):
        raise UsageError(f"--option channel_order={channel_order}: choose RGB or BGR")
    if metric and metric not in ("cosine", "euclidean"):
        raise UsageError(f"--option metric={metric}: choose cosine or euclidean")
    fields["input"] = InputSpec(
        _templates()[template] if template else base.template,
        channel_order.upper() or base.channel_order,
        _triple("mean", mean) if mean else base.mean,
        _triple("std", std) if std else base.std,
    )
    if (mean or std) and in_unit_range(fields["input"].mean, fields["input"].std):
        _refuse_unit_range(mean, std, fields["input"])
    if metric:
        fields["metric"] = metric
    return fields


def _refuse_unit_range(mean: str, std: str, spec: InputSpec) -> None:
    """Mean and std written for 0…1 input: one line with the pixel values that mean the same (and the preset)."""
    given = " ".join(f"--option {name}={text}" for name, text in (("mean", mean), ("std", std)) if text)
    pixels = replace(spec, mean=tuple(255 * m for m in spec.mean), std=tuple(255 * s for s in spec.std))
    same = [
        name for name, preset in PRESETS.items()
        if (preset.template, preset.channel_order) == (pixels.template, pixels.channel_order)
        and np.allclose((preset.mean, preset.std), (pixels.mean, pixels.std), rtol=1e-4)
    ]
    raise UsageError(
        f"{given}: 0–1 units (as PyTorch code writes ImageNet's 0.485 and 0.229), but lrbench's mean and std apply "
        f"to 0…255 pixels: give mean={channel_values(pixels.mean)} std={channel_values(pixels.std)} (each × 255)"
        + (f", as preset={same[0]} does" if same else "")
    )


def _convention_name(preset: str, **overrides: str) -> str:
    """``insightface``, ``insightface std=128`` or ``custom template=… …``: what the manifest calls it."""
    changed = [f"{name}={value}" for name, value in overrides.items() if value]
    return " ".join(([preset] if preset else ["custom"]) + changed)


def _model_file(weights: str | None, expected: str, example: str) -> Path:
    if weights in (None, "random"):
        raise UsageError(f"--weights: this backbone runs {expected}; pass --weights {example}")
    path = Path(weights).expanduser()
    if not path.is_file():
        raise UsageError(f"--weights {weights}: no such file")
    from lrbench import check_weights_file  # with the checkpoint readers, which load torch

    check_weights_file(path, expected)
    return path.resolve()


def build_onnx(weights: str | None, **options: str):
    from .networks.model_files import OnnxNetwork

    spec = convention(**options)["input"]  # before the file: a bad option is reported first
    return OnnxNetwork(_model_file(weights, "an ONNX model", "model.onnx"), spec, _convention_name(**options))


def build_torchscript(weights: str | None, **options: str):
    convention(**options)
    path = _model_file(weights, "a TorchScript model", "model.pt")
    if not zipfile.is_zipfile(path):
        raise DataError(f"{path}: not a TorchScript model (torch.jit.save writes a zip archive)")
    from .networks.model_files import torchscript

    return torchscript(path, _convention_name(**options))


def _description(what: str) -> str:
    """What ``lrbench list`` says: the file kind, how to state the convention, and every preset's convention."""
    presets = "; ".join(
        f"{name}: {spec.template.name} {spec.channel_order} (x − {channel_values(spec.mean)}) / "
        f"{channel_values(spec.std)}"
        for name, spec in PRESETS.items()
    )
    return (
        f"{what}; the input convention is required: --option preset=NAME (or a registered backbone's name), or "
        f"template, channel_order, mean and std (of 0…255 pixels). Presets: {presets}"
    )


@hookimpl
def register_backbones(register):
    files = (
        ("onnx", build_onnx, "an ONNX face model file, run by onnxruntime (crop size read from the graph)"),
        ("torchscript", build_torchscript, "a TorchScript face model file (torch.jit.save)"),
    )
    for name, build, what in files:
        register(
            BackboneSpec(
                name=name,
                build=build,
                input=PRESETS["insightface"],  # what listings show; runs use the chosen convention
                embedding_dim=None,
                needs_weights=True,
                options=dict(CONVENTION_OPTIONS),
                specialise=convention,
                description=_description(what),
            )
        )
