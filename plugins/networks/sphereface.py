"""SphereFace residual networks (Liu et al., CVPR 2017) and the checkpoint layouts people have for them.

Four stages, each a stride-2 3×3 convolution with PReLU followed by residual units of two 3×3
convolutions with PReLU; 96×112 input → 512×7×6 → fully connected 512-d embedding. Depth counts the
convolutions: 4 + 2 × (units per stage).
"""

from torch import nn

from lrbench import CheckpointLayout, load_weights

from ..sphereface import CHECKPOINT_LAYOUTS, EMBEDDING

UNITS = {4: (0, 0, 0, 0), 10: (0, 1, 2, 0), 20: (1, 2, 4, 1), 36: (2, 4, 8, 2), 64: (3, 8, 16, 3)}
WIDTHS = (64, 128, 256, 512)


class Unit(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv1, self.act1 = nn.Conv2d(channels, channels, 3, 1, 1), nn.PReLU(channels)
        self.conv2, self.act2 = nn.Conv2d(channels, channels, 3, 1, 1), nn.PReLU(channels)

    def forward(self, x):
        return x + self.act2(self.conv2(self.act1(self.conv1(x))))


class Stage(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, units: int):
        super().__init__()
        self.down, self.act = nn.Conv2d(in_channels, out_channels, 3, 2, 1), nn.PReLU(out_channels)
        self.units = nn.Sequential(*(Unit(out_channels) for _ in range(units)))

    def forward(self, x):
        return self.units(self.act(self.down(x)))


class SphereNet(nn.Module):
    """SphereFace-{4,10,20,36,64}: (N, 3, 112, 96) → (N, 512).

    ``width`` multiplies the channel counts (64/128/256/512 at 1.0): narrow networks train in seconds on
    a CPU, for tests and the demo.
    """

    def __init__(self, depth: int = 20, width: float = 1.0):
        super().__init__()
        if depth not in UNITS:
            raise ValueError(f"depth {depth} is not a SphereFace network; choose one of {sorted(UNITS)}")
        if width <= 0:
            raise ValueError(f"width {width} must be positive (1.0 gives 64/128/256/512 channels)")
        self.depth = depth
        channels = (3, *(max(1, round(w * width)) for w in WIDTHS))
        self.stages = nn.Sequential(*(Stage(channels[s], channels[s + 1], n) for s, n in enumerate(UNITS[depth])))
        self.fc5 = nn.Linear(channels[-1] * 7 * 6, EMBEDDING)
        self._initialise()

    def _initialise(self):
        """As the original Caffe model: Xavier for the stride convolutions, N(0, 0.01) inside residual units."""
        for name, module in self.named_modules():
            if isinstance(module, nn.Conv2d):
                if ".units." in name:
                    nn.init.normal_(module.weight, std=0.01)
                else:
                    nn.init.xavier_uniform_(module.weight)
                nn.init.zeros_(module.bias)

    def forward(self, x):
        return self.fc5(self.stages(x).flatten(1))


def _native_names(depth: int):
    """(stage, unit, role) → this module's parameter prefix, for every convolution and PReLU."""
    for s, units in enumerate(UNITS[depth]):
        yield (s, None, "conv"), f"stages.{s}.down"
        yield (s, None, "act"), f"stages.{s}.act"
        for u in range(units):
            for role in ("conv1", "act1", "conv2", "act2"):
                yield (s, u, role), f"stages.{s}.units.{u}.{role}"


def _port_name(s, u, role):
    """The widely used PyTorch port (clcarwin/sphereface_pytorch ``sphere20a``): conv1_1, relu1_1, conv1_2…"""
    index = 1 if u is None else 2 + 2 * u + (role[-1] == "2")
    return f"{'conv' if role.startswith('conv') else 'relu'}{s + 1}_{index}"


def _seed_name(s, u, role):
    """The seed project's nn.Sequential: per stage [conv, PReLU, Sequential(unit.resblock…)], then flatten, fc."""
    if u is None:
        return str(3 * s + (role == "act"))
    return f"{3 * s + 2}.{u}.resblock.{('conv1', 'act1', 'conv2', 'act2').index(role)}"


def _layout(name: str, rename, fc: str, depth: int) -> CheckpointLayout:
    renames = {f"{fc}.{suffix}": f"fc5.{suffix}" for suffix in ("weight", "bias")}
    for key, native in _native_names(depth):
        for suffix in ("weight", "bias") if key[2].startswith("conv") else ("weight",):
            renames[f"{rename(*key)}.{suffix}"] = f"{native}.{suffix}"
    return CheckpointLayout(name, renames)


def layouts(depth: int) -> tuple[CheckpointLayout, ...]:
    port, seed = CHECKPOINT_LAYOUTS
    fc_index = str(3 * len(WIDTHS) + 1)  # after the four stages' three modules and the flatten
    return _layout(port, _port_name, "fc5", depth), _layout(seed, _seed_name, fc_index, depth)


def sphereface(weights, depth: int, width: float) -> SphereNet:
    """The network, with ``weights`` loaded in its own layout or a known foreign one (unless "random")."""
    model = SphereNet(depth, width)
    if weights != "random":
        load_weights(model, weights, layouts(depth), ignore=("fc6.",))
    return model
