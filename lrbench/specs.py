"""What a plugin registers: plain dataclasses, so a plugin reads as a declaration."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

FLIP_FUSIONS = ("concat", "sum", "none")
METRICS = ("cosine", "euclidean")


@dataclass(frozen=True)
class CropTemplate:
    """Where the five landmarks (left eye, right eye, nose, left/right mouth corner) land in the crop."""

    name: str
    size: tuple[int, int]  # (width, height) in pixels
    points: tuple[tuple[float, float], ...]

    @property
    def interocular(self) -> float:
        """Distance between the eye centres in crop pixels."""
        (lx, ly), (rx, ry) = self.points[0], self.points[1]
        return math.hypot(rx - lx, ry - ly)


SPHEREFACE_96x112 = CropTemplate(
    "sphereface-96x112",
    (96, 112),
    ((30.2946, 51.6963), (65.5318, 51.5014), (48.0252, 71.7366), (33.5493, 92.3655), (62.7299, 92.2041)),
)
ARCFACE_112x112 = CropTemplate(
    "arcface-112x112",
    (112, 112),
    ((38.2946, 51.6963), (73.5318, 51.5014), (56.0252, 71.7366), (41.5493, 92.3655), (70.7299, 92.2041)),
)


@dataclass(frozen=True)
class InputSpec:
    """How a backbone wants its input: crop template, channel order and normalisation of 0…255 pixels."""

    template: CropTemplate
    channel_order: str = "RGB"  # "RGB" or "BGR"
    mean: tuple[float, float, float] = (127.5, 127.5, 127.5)
    std: tuple[float, float, float] = (128.0, 128.0, 128.0)

    def __post_init__(self):
        if self.channel_order not in ("RGB", "BGR"):
            raise ValueError(f"channel_order must be 'RGB' or 'BGR', not {self.channel_order!r}")

    def normalise(self, rgb: torch.Tensor) -> torch.Tensor:
        """Float NCHW RGB batch in 0…255 → the network's input (channel order, mean, std)."""
        x = rgb.flip(1) if self.channel_order == "BGR" else rgb
        mean = torch.tensor(self.mean, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
        std = torch.tensor(self.std, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
        return (x - mean) / std

    def describe(self) -> dict[str, Any]:
        return {
            "template": self.template.name,
            "crop_size": list(self.template.size),
            "template_points": [list(p) for p in self.template.points],
            "interocular_px": round(self.template.interocular, 2),
            "channel_order": self.channel_order,
            "mean": list(self.mean),
            "std": list(self.std),
        }


@dataclass(frozen=True)
class BackboneSpec:
    """A face network: ``build(weights, **options)`` returns an ``nn.Module`` mapping a batch to embeddings.

    ``weights`` is None (no weights given), ``"random"`` (an untrained network, if the backbone allows it)
    or what the user passed to ``--weights``. ``options`` lists the keyword options ``build`` accepts
    (``--option name=value``) with their defaults; ``checkpoint_layouts`` names the foreign checkpoint
    layouts it can load, for listings; ``seed_input`` is the input the seed project used, if it differs.
    """

    name: str
    build: Callable[..., torch.nn.Module]
    input: InputSpec
    embedding_dim: int
    metric: str = "cosine"
    flip_fusion: str = "concat"
    needs_weights: bool = False
    description: str = ""
    options: dict[str, Any] = field(default_factory=dict)
    checkpoint_layouts: tuple[str, ...] = ()
    seed_input: InputSpec | None = None  # the input as the seed project fed it, for ``--preset seed``

    def __post_init__(self):
        if self.metric not in METRICS:
            raise ValueError(f"backbone {self.name!r}: metric must be one of {METRICS}")
        if self.flip_fusion not in FLIP_FUSIONS:
            raise ValueError(f"backbone {self.name!r}: flip_fusion must be one of {FLIP_FUSIONS}")


@dataclass(frozen=True)
class DegradationSpec:
    """``apply(batch, df, **options)``: float NCHW batch in 0…255 → degraded batch of the same shape and range.

    ``options`` declares the keyword options (``--degradation-option name=value``) with their defaults;
    ``settings`` records fixed choices (interpolation, antialiasing) for the manifest.
    """

    name: str
    apply: Callable[..., torch.Tensor]
    description: str = ""
    settings: dict[str, Any] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class PairSet:
    """A verification protocol loaded from disk: unique images and pairs of indices into them."""

    root: Path
    images: list[str]  # unique paths relative to root
    first: Any  # np.ndarray[int], index into images
    second: Any
    same: Any  # np.ndarray[bool]
    folds: Any  # np.ndarray[int], 0-based fold of each pair
    source: Path  # the pairs file
    names: list[tuple[str, str]] = field(default_factory=list)  # pair names as written in the file
    landmarks: Path | None = None  # the protocol's default landmark file, when one was found


@dataclass(frozen=True)
class ProtocolSpec:
    """``load(data_root, pairs_file or None)`` → PairSet; ``expected`` holds count checks for the report."""

    name: str
    load: Callable[[Path, Path | None], PairSet]
    description: str = ""
    citation: str = ""
    expected: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class TrainerSpec:
    """A training procedure: ``command`` is the click command that ``lrbench train <name>`` runs."""

    name: str
    command: Any  # click.Command
    description: str = ""
