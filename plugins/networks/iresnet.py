"""IResNet networks of both families and the readers of their checkpoints (see plugins/iresnet.py)."""

from __future__ import annotations

import re

import torch
from torch import nn

from lrbench import CheckpointLayout, DataError, load_weights, read_state_dict

from ..iresnet import ADAFACE_LAYOUTS, ADAFACE_UNITS, INSIGHTFACE_UNITS

WIDTHS = (64, 128, 256, 512)
FINAL_SIDE = 7  # 112 / 2**4: the spatial size the fully connected layer sees
MAX_WIDTH = 4.0


def conv3x3(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, stride, 1, bias=False)


class Block(nn.Module):
    """BN → conv → BN → PReLU → strided conv → BN, added to the shortcut.

    The shortcut takes every ``stride``-th pixel (what a 1×1 max pool of that stride does) and, with
    ``projection``, a 1×1 conv + BN (``downsample``). A strided 1×1 conv sees exactly those pixels, so the
    subsampling comes first and the conv has stride 1: the same numbers, a quarter of the work, and it avoids a
    crash of PyTorch's CPU backward for strided 1×1 convolutions of few channels in channels-last memory.
    """

    def __init__(self, cin: int, cout: int, stride: int, projection: bool):
        super().__init__()
        self.bn1, self.conv1, self.bn2 = nn.BatchNorm2d(cin), conv3x3(cin, cout), nn.BatchNorm2d(cout)
        self.prelu, self.conv2, self.bn3 = nn.PReLU(cout), conv3x3(cout, cout, stride), nn.BatchNorm2d(cout)
        self.downsample = (
            nn.Sequential(nn.Conv2d(cin, cout, 1, bias=False), nn.BatchNorm2d(cout)) if projection else None
        )
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn3(self.conv2(self.prelu(self.bn2(self.conv1(self.bn1(x))))))
        shortcut = x[:, :, :: self.stride, :: self.stride]
        return out + (shortcut if self.downsample is None else self.downsample(shortcut))


class IResNet(nn.Module):
    """Normalised (N, 3, 112, 112) → (N, embedding) features (not unit length: their norm is the XNorm).

    ``units`` is the number of blocks per stage; ``width`` multiplies the channel counts (64/128/256/512 at
    1.0): narrow networks train in seconds on a CPU, for tests and demonstrations. ``adaface`` selects
    AdaFace's parameter-free first-stage shortcut, dropout 0.4 and unscaled last BN.
    """

    def __init__(self, units: tuple[int, ...], width: float = 1.0, embedding: int = 512, adaface: bool = False):
        super().__init__()
        channels = [max(1, round(w * width)) for w in WIDTHS]
        self.conv1, self.bn1, self.prelu = conv3x3(3, channels[0]), nn.BatchNorm2d(channels[0]), nn.PReLU(channels[0])
        cin = channels[0]
        for stage, (cout, count) in enumerate(zip(channels, units), start=1):
            projection = cin != cout or not adaface
            blocks = [Block(cin, cout, 2, projection)] + [Block(cout, cout, 1, False) for _ in range(count - 1)]
            setattr(self, f"layer{stage}", nn.Sequential(*blocks))
            cin = cout
        self.bn2 = nn.BatchNorm2d(cin)
        self.dropout = nn.Dropout(0.4 if adaface else 0.0)
        self.fc = nn.Linear(cin * FINAL_SIDE * FINAL_SIDE, embedding)
        self.features = nn.BatchNorm1d(embedding, affine=not adaface)
        if not adaface:
            self.features.weight.requires_grad_(False)  # insightface keeps this scale at 1 while training
        for module in self.modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.prelu(self.bn1(self.conv1(x)))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.features(self.fc(self.dropout(self.bn2(x).flatten(1))))


def _bn(ours: str, theirs: str, affine: bool = True) -> dict[str, str]:
    names = ("running_mean", "running_var", "num_batches_tracked") + (("weight", "bias") if affine else ())
    return {f"{theirs}.{name}": f"{ours}.{name}" for name in names}


def adaface_renames(units: tuple[int, ...]) -> dict[str, str]:
    """AdaFace's ``net.Backbone`` parameter names → this module's."""
    renames = {"input_layer.0.weight": "conv1.weight", "input_layer.2.weight": "prelu.weight"}
    renames |= _bn("bn1", "input_layer.1")
    body = 0
    for stage, count in enumerate(units, start=1):
        for block in range(count):
            ours, theirs = f"layer{stage}.{block}", f"body.{body}"
            for index, name in ((1, "conv1"), (3, "prelu"), (4, "conv2")):
                renames[f"{theirs}.res_layer.{index}.weight"] = f"{ours}.{name}.weight"
            for index, name in ((0, "bn1"), (2, "bn2"), (5, "bn3")):
                renames |= _bn(f"{ours}.{name}", f"{theirs}.res_layer.{index}")
            renames[f"{theirs}.shortcut_layer.0.weight"] = f"{ours}.downsample.0.weight"
            renames |= _bn(f"{ours}.downsample.1", f"{theirs}.shortcut_layer.1")
            body += 1
    renames |= _bn("bn2", "output_layer.0")
    renames |= {"output_layer.3.weight": "fc.weight", "output_layer.3.bias": "fc.bias"}
    return renames | _bn("features", "output_layer.4", affine=False)


def adaface_layouts(units: tuple[int, ...]) -> tuple[CheckpointLayout, ...]:
    """AdaFace's names as its Lightning ``.ckpt`` holds them (``model.`` prefix) and bare (a re-saved state dict)."""
    renames = adaface_renames(units)
    lightning, bare = ADAFACE_LAYOUTS
    return (
        CheckpointLayout(lightning, {f"model.{theirs}": ours for theirs, ours in renames.items()}),
        CheckpointLayout(bare, renames),
    )


def _stage_counts(state: dict[str, torch.Tensor]) -> tuple[int, ...] | None:
    """Blocks per stage of a checkpoint in either family's names (None when it is neither)."""
    counts = [len({m[1] for k in state if (m := re.match(rf"layer{s}\.(\d+)\.", k))}) for s in range(1, 5)]
    if all(counts):
        return tuple(counts)
    convs = sorted(
        (int(m[1]), tensor.shape[0])
        for key, tensor in state.items()
        if (m := re.match(r"(?:model\.)?body\.(\d+)\.res_layer\.1\.weight$", key))
    )
    widths = [width for _, width in convs]
    if not widths:
        return None
    stages, previous = [], None
    for width in widths:
        if width != previous:
            stages.append(0)
        stages[-1] += 1
        previous = width
    return tuple(stages) if len(stages) == 4 else None


def _depth_hint(weights, plans: dict[int, tuple[int, ...]], depth: int) -> str:
    """' (it holds depth N: --option depth=N)' when the file is this family at another depth, else ''."""
    try:
        counts = _stage_counts(read_state_dict(weights))
    except DataError:
        return ""
    found = [d for d, units in plans.items() if units == counts and d != depth]
    return f"; the file holds a depth-{found[0]} network: --option depth={found[0]}" if found else ""


def _check(depth: int, width: float, plans: dict[int, tuple[int, ...]]) -> None:
    if depth not in plans:
        raise ValueError(f"depth {depth}: choose one of {', '.join(map(str, plans))}")
    if not 0 < width <= MAX_WIDTH:
        raise ValueError(f"width {width}: expected a factor in (0, {MAX_WIDTH}] of the 64/128/256/512 channels")


def _load(model: nn.Module, weights, layouts, plans, depth: int, ignore=()) -> None:
    try:
        load_weights(model, weights, layouts, ignore=ignore)
    except DataError as error:
        hint = _depth_hint(weights, plans, depth)
        if hint:
            raise DataError(f"{error}{hint}") from None
        raise


def insightface(weights, depth: int, width: float, embedding: int) -> IResNet:
    """insightface's IResNet with ``weights`` (its backbone.pth) loaded, unless "random"."""
    _check(depth, width, INSIGHTFACE_UNITS)
    model = IResNet(INSIGHTFACE_UNITS[depth], width, embedding)
    if weights != "random":
        _load(model, weights, (), INSIGHTFACE_UNITS, depth)
    return model


def adaface(weights, depth: int, width: float) -> IResNet:
    """AdaFace's IR with ``weights`` (its .ckpt, or a state dict in either naming) loaded, unless "random"."""
    _check(depth, width, ADAFACE_UNITS)
    units = ADAFACE_UNITS[depth]
    model = IResNet(units, width, adaface=True)
    if weights != "random":
        _load(model, weights, adaface_layouts(units), ADAFACE_UNITS, depth, ignore=("head.", "model.head."))
    return model
