"""dlib's face-recognition ResNet read from dlib's own serialisation into PyTorch (see plugins/dlib_resnet.py).

dlib writes a network as nested objects: the loss layer (``add_loss_layer`` version 1, then its details),
then one version integer per layer from the output end inwards (2 for an ``add_layer``, 1 for a tag or skip
layer, 3 for the layer that holds the input layer), then the input layer, and then the layers' details from
the input end outwards, each followed by its training state. Tag and skip layers write nothing but their
version, so the residual wiring cannot be read from the file: build_network takes it from the example and
checks that the file's layers fit it.
"""

from __future__ import annotations

import math
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from lrbench import check_weights_file, load_weights

from ..dlib_resnet import CHIP_SIZE, DAT_NAME, MEAN_RGB


@dataclass
class DlibLayer:
    """One ``add_layer`` (or a tag/skip marker, kind ``"mark"``) in forward order, as read from the file.

    ``weight``/``bias``: conv filters (O, I, kh, kw) and biases, affine gains and offsets, or the fc matrix
    (out, in). ``window``, ``stride`` and ``padding`` are (y, x) for convolutions and pools.
    """

    kind: str
    offset: int  # byte offset of the layer's tag, for error messages
    weight: torch.Tensor | None = None
    bias: torch.Tensor | None = None
    window: tuple[int, int] = (0, 0)
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int] = (0, 0)


class DatReader:
    """dlib's serialisation (dlib/serialize.h, dlib/dnn), as far as this network uses it.

    Every failure is a ValueError naming the file and the byte offset, because a wrong file is a usage error.
    """

    def __init__(self, data: bytes, source: str = "<bytes>"):
        self.data, self.source, self.pos = data, source, 0

    def fail(self, problem: str, offset: int | None = None) -> NoReturn:
        where = self.pos if offset is None else offset
        raise ValueError(f"{self.source} is not a dlib face-recognition ResNet: {problem} at byte offset {where}")

    def take(self, count: int) -> bytes:
        if self.pos + count > len(self.data):
            self.fail(f"file ends early (wanted {count} bytes, {len(self.data) - self.pos} left)")
        chunk = self.data[self.pos : self.pos + count]
        self.pos += count
        return chunk

    def read_int(self) -> int:
        """An integer: a header byte (low 4 bits: byte count, bit 7: sign), then little-endian magnitude."""
        header = self.take(1)[0]
        if header & 0x70 or header & 0x0F > 8:
            self.fail(f"bad integer header 0x{header:02x}", self.pos - 1)
        value = int.from_bytes(self.take(header & 0x0F), "little")
        return -value if header & 0x80 else value

    def read_float(self) -> float:
        """A float as dlib writes it portably: integer mantissa m and exponent e, value m·2^e."""
        mantissa = self.read_int()
        return math.ldexp(mantissa, self.read_int())

    def read_bool(self) -> bool:
        """A bool: the character '0' or '1'."""
        char = self.take(1)
        if char not in (b"0", b"1"):
            self.fail(f"expected a bool ('0' or '1'), found {char!r}", self.pos - 1)
        return char == b"1"

    def read_string(self) -> str:
        length = self.read_int()
        if length > 64:  # the longest tag is a few dozen characters; more means we are reading garbage
            self.fail(f"implausible string length {length}")
        return self.take(length).decode("latin-1")

    def read_tag(self, *expected: str) -> str:
        start = self.pos
        name = self.read_string()
        if name not in expected:
            self.fail(f"unexpected layer tag {name!r} (expected {' or '.join(map(repr, expected))})", start)
        return name

    def read_version(self, *expected: int) -> int:
        start = self.pos
        value = self.read_int()
        if value not in expected:
            self.fail(f"unexpected version {value} (expected {' or '.join(map(str, expected))})", start)
        return value

    def read_shape(self) -> tuple[int, int, int, int]:
        """Four dimensions (num_samples, k, nr, nc) of a tensor or an alias_tensor (dlib's NCHW)."""
        start = self.pos
        shape = tuple(self.read_int() for _ in range(4))
        if min(shape) < 0:
            self.fail(f"negative tensor dimension in {shape}", start)
        return shape

    def read_tensor(self) -> torch.Tensor:
        """A tensor: version 2, its shape, then raw little-endian float32s (not dlib's portable floats)."""
        self.read_version(2)
        shape = self.read_shape()
        count = math.prod(shape)
        return torch.from_numpy(np.frombuffer(self.take(4 * count), "<f4").copy()).reshape(shape)

    def read_alias(self) -> tuple[int, int, int, int]:
        """An alias_tensor (a view into a layer's flat params): version 1 and its shape, no data."""
        self.read_version(1)
        return self.read_shape()

    def read_pairs(self, count: int) -> list[tuple[int, int]]:
        values = [self.read_int() for _ in range(2 * count)]
        return list(zip(values[::2], values[1::2]))

    def skip_multipliers(self, count: int) -> None:
        """Learning-rate and weight-decay multipliers: training settings, read and dropped."""
        for _ in range(count):
            self.read_float()


def read_layer_details(reader: DatReader) -> DlibLayer:
    """The details of one computational layer: its tag, then its parameters."""
    offset = reader.pos
    kind = reader.read_tag("con_4", "affine_", "relu_", "max_pool_2", "avg_pool_2", "add_prev_", "fc_2")
    layer = DlibLayer(kind, offset)
    if kind == "con_4":  # params (filters then biases), #filters, nr, nc, strides, paddings, two aliases
        params = reader.read_tensor().flatten()
        filters, (rows, cols), layer.stride, layer.padding = reader.read_int(), *reader.read_pairs(3)
        weight_shape, bias_shape = reader.read_alias(), reader.read_alias()
        reader.skip_multipliers(4)
        if weight_shape[0] != filters or weight_shape[2:] != (rows, cols) or math.prod(bias_shape) != filters:
            reader.fail(f"con_ filter shape {weight_shape} disagrees with {filters} {rows}×{cols} filters", offset)
        if params.numel() != math.prod(weight_shape) + filters:
            reader.fail(f"con_ holds {params.numel()} values, not {math.prod(weight_shape) + filters}", offset)
        layer.weight, layer.bias = params[:-filters].reshape(weight_shape), params[-filters:]
        layer.window = (rows, cols)
    elif kind == "affine_":  # params (gains then offsets, batch norm folded in), two aliases, mode
        params = reader.read_tensor().flatten()
        channels = math.prod(reader.read_alias())
        reader.read_alias()
        if reader.read_int() != 0 or params.numel() != 2 * channels:
            reader.fail("affine_ is not a per-channel (convolutional mode) layer", offset)
        layer.weight, layer.bias = params[:channels], params[channels:]
    elif kind in ("max_pool_2", "avg_pool_2"):
        layer.window, layer.stride, layer.padding = reader.read_pairs(3)
    elif kind == "fc_2":  # #outputs, #inputs, params (an inputs × outputs matrix), aliases, bias mode
        outputs, inputs = reader.read_int(), reader.read_int()
        params = reader.read_tensor().flatten()
        reader.read_alias()
        reader.read_alias()
        if reader.read_int() != 1 or params.numel() != inputs * outputs:
            reader.fail(f"fc_ is not a {inputs}→{outputs} layer without bias", offset)
        reader.skip_multipliers(4)
        layer.weight = params.reshape(inputs, outputs).T.contiguous()
    return layer


def read_network(data: bytes, source: str = "<bytes>") -> list[DlibLayer]:
    """Parse a whole ``loss_metric`` network file into its layers, input end first."""
    reader = DatReader(data, source)
    reader.read_version(1)  # add_loss_layer
    reader.read_tag("loss_metric_2")
    reader.read_float(), reader.read_float()  # margin and distance threshold: training settings
    nesting = []  # layer versions from the output end inwards: 2 add_layer, 1 tag/skip, 3 the input's layer
    while not nesting or nesting[-1] != 3:
        nesting.append(reader.read_version(1, 2, 3))
    input_offset = reader.pos
    reader.read_tag("input_rgb_image_sized")
    mean = tuple(reader.read_float() for _ in range(3))
    size = (reader.read_int(), reader.read_int())
    if size != (CHIP_SIZE, CHIP_SIZE) or not np.allclose(mean, MEAN_RGB, atol=1e-3):
        reader.fail(f"input is {size[0]}×{size[1]} with mean {mean}, not 150×150 with mean {MEAN_RGB}", input_offset)
    layers = []
    for version in reversed(nesting):
        if version == 1:
            layers.append(DlibLayer("mark", reader.pos))
            continue
        layers.append(read_layer_details(reader))
        for _ in range(3):  # setup called, gradient stale, output disabled
            reader.read_bool()
        for _ in range(3):  # x_grad, cached output, params_grad (or grad_final): empty once dlib cleans a net
            reader.read_tensor()
        if version == 3:
            reader.read_int()  # sample expansion factor
    if reader.pos != len(data):
        reader.fail(f"{len(data) - reader.pos} unexpected bytes after the network")
    return layers


def add_prev(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """dlib's add_prev_: tensors of different shapes are summed into the larger shape, aligned top-left
    (channel 0, row 0, column 0) with the missing entries taken as zero (tt::add)."""
    channels, rows, cols = (max(p, q) for p, q in zip(a.shape[1:], b.shape[1:]))

    def grow(x: torch.Tensor) -> torch.Tensor:
        return F.pad(x, (0, cols - x.shape[3], 0, rows - x.shape[2], 0, channels - x.shape[1]))

    return grow(a) + grow(b)


class Residual(nn.Module):
    """dlib's ``ares``/``ares_down``: relu(conv-affine-relu-conv-affine(x) ⊕ shortcut(x)), ⊕ = add_prev."""

    def __init__(self, conv1: nn.Conv2d, conv2: nn.Conv2d, shortcut: nn.Module):
        super().__init__()
        self.conv1, self.conv2, self.shortcut = conv1, conv2, shortcut

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(add_prev(self.conv2(F.relu(self.conv1(x))), self.shortcut(x)))


class DlibResNet(nn.Module):
    """Normalised (N, 3, 150, 150) RGB, as InputSpec.normalise gives it → (N, 128) dlib descriptors."""

    def __init__(self, stem: nn.Sequential, blocks: nn.Sequential, fc: nn.Linear):
        super().__init__()
        self.stem, self.blocks, self.fc = stem, blocks, fc

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.blocks(self.stem(x)).mean((2, 3)))


class _LayerQueue:
    """The parsed layers, taken in order, each checked to be the kind the architecture has next."""

    def __init__(self, layers: list[DlibLayer], source: str):
        self.layers, self.source, self.index = layers, source, 0

    def peek(self) -> str | None:
        return self.layers[self.index].kind if self.index < len(self.layers) else None

    def fail(self, problem: str, layer: DlibLayer | None = None) -> NoReturn:
        where = f" at byte offset {layer.offset}" if layer else ""
        raise ValueError(f"{self.source} is not a dlib face-recognition ResNet: {problem}{where}")

    def pop(self, kind: str) -> DlibLayer:
        if self.peek() != kind:
            found = self.layers[self.index] if self.peek() else None
            self.fail(f"layer {self.index} is {found.kind if found else 'missing'}, expected {kind}", found)
        self.index += 1
        return self.layers[self.index - 1]

    def conv_affine(self) -> nn.Conv2d:
        """A con_ layer with the affine_ after it folded into the convolution's weights and bias."""
        con, affine = self.pop("con_4"), self.pop("affine_")
        out_channels, in_channels, *kernel = con.weight.shape
        if affine.weight.numel() != out_channels:
            self.fail(f"affine_ has {affine.weight.numel()} channels after a con_ with {out_channels}", affine)
        conv = nn.Conv2d(in_channels, out_channels, tuple(kernel), con.stride, con.padding)
        conv.weight.data = con.weight * affine.weight.view(-1, 1, 1, 1)
        conv.bias.data = con.bias * affine.weight + affine.bias
        return conv


def build_network(layers: list[DlibLayer], source: str = "<layers>") -> DlibResNet:
    """Assemble the parsed layers (input end first) into the face-recognition ResNet, checking its wiring.

    Stem: con, affine, relu, max_pool. Each residual block: mark, con, affine, relu, con, affine, then
    add_prev (identity shortcut) or mark, mark, avg_pool, add_prev (pooled shortcut); then relu.
    Head: avg_pool over everything, fc.
    """
    queue = _LayerQueue(layers, source)
    conv = queue.conv_affine()
    queue.pop("relu_")
    pool = queue.pop("max_pool_2")
    stem = nn.Sequential(conv, nn.ReLU(), nn.MaxPool2d(pool.window, pool.stride, pool.padding))
    blocks = []
    while queue.peek() == "mark":  # tag1: the block's input, where its shortcut starts
        queue.pop("mark")
        conv1 = queue.conv_affine()
        queue.pop("relu_")
        conv2 = queue.conv_affine()
        shortcut: nn.Module = nn.Identity()
        if queue.peek() == "mark":  # tag2 on the residual branch, then skip1 back to the block's input
            queue.pop("mark")
            queue.pop("mark")
            pool = queue.pop("avg_pool_2")
            if pool.padding != (0, 0):  # how dlib counts padding in an average is not needed here
                queue.fail("the shortcut's avg_pool_ is padded", pool)
            shortcut = nn.AvgPool2d(pool.window, pool.stride)
        queue.pop("add_prev_")
        queue.pop("relu_")
        blocks.append(Residual(conv1, conv2, shortcut))
    pool = queue.pop("avg_pool_2")
    if pool.window != (0, 0):
        queue.fail(f"the last pool has a {pool.window} window instead of averaging over everything", pool)
    dense = queue.pop("fc_2")
    if queue.peek() is not None:
        queue.fail("layers after the fc_ layer", queue.layers[queue.index])
    fc = nn.Linear(dense.weight.shape[1], dense.weight.shape[0], bias=False)
    fc.weight.data = dense.weight
    return DlibResNet(stem, nn.Sequential(*blocks), fc).eval()


# (channels, down-sampling) of the 14 residual blocks, input end first: the example's alevel4 … alevel0
BLOCKS = [(32, False)] * 3 + [(64, True)] + [(64, False)] * 3 + [(128, True)] + [(128, False)] * 2
BLOCKS += [(256, True)] + [(256, False)] * 2 + [(256, True)]


def untrained_network() -> DlibResNet:
    """The same architecture with PyTorch's default initialisation, for ``--weights random``."""
    blocks, channels = [], 32
    for width, down in BLOCKS:
        conv1 = nn.Conv2d(channels, width, 3, 2, 0) if down else nn.Conv2d(channels, width, 3, 1, 1)
        shortcut = nn.AvgPool2d(2, 2) if down else nn.Identity()
        blocks.append(Residual(conv1, nn.Conv2d(width, width, 3, 1, 1), shortcut))
        channels = width
    stem = nn.Sequential(nn.Conv2d(3, 32, 7, 2), nn.ReLU(), nn.MaxPool2d(3, 2))
    return DlibResNet(stem, nn.Sequential(*blocks), nn.Linear(channels, 128, bias=False)).eval()


def dlib_resnet(path: Path) -> DlibResNet:
    """The network in ``path``: dlib's own .dat file, or a PyTorch checkpoint of it (a distilled student's model.pt).

    The network records the file it was read from as ``weights_file``, for the run manifest.
    """
    check_weights_file(path, f"dlib's {DAT_NAME} or a PyTorch checkpoint")
    if zipfile.is_zipfile(path):  # what torch.save writes; dlib's serialisation is not a zip archive
        network = untrained_network()
        load_weights(network, path)
        return network
    network = build_network(read_network(path.read_bytes(), str(path)), str(path))
    network.weights_file = path.resolve()
    return network
