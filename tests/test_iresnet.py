"""IResNet (insightface), AdaFace IR and MobileFaceNet load their published checkpoints and compute what the
published networks compute.

The reference side is written here from the published code (insightface ``arcface_torch/backbones/iresnet.py``
and ``mobilefacenet.py``, AdaFace ``net.py``): parameter names and shapes as those files create them, and a
functional forward pass over the state dict, so nothing on that side comes from lrbench.
"""

import collections

import pytest
import torch
import torch.nn.functional as F
from lrbench_plugins.networks.iresnet import adaface_renames

from lrbench import registry
from lrbench.errors import DataError
from lrbench.eval.models import build_backbone

IRESNET_PLANS = {18: [2, 2, 2, 2], 34: [3, 4, 6, 3], 50: [3, 4, 14, 3], 100: [3, 13, 30, 3], 200: [6, 26, 60, 6]}
ADAFACE_PLANS = {18: [2, 2, 2, 2], 34: [3, 4, 6, 3], 50: [3, 4, 14, 3], 100: [3, 13, 30, 3]}
STAGE_CHANNELS = [64, 128, 256, 512]


# --- published layouts: (name, shape) of every tensor -------------------------------------------------------------


def bn_shapes(prefix, channels, affine=True):
    shapes = {f"{prefix}.running_mean": (channels,), f"{prefix}.running_var": (channels,)}
    if affine:
        shapes |= {f"{prefix}.weight": (channels,), f"{prefix}.bias": (channels,)}
    return shapes | {f"{prefix}.num_batches_tracked": ()}


def iresnet_shapes(plan, width=1.0):
    """insightface IResNet(IBasicBlock, plan): conv1/bn1/prelu, layerN.i.{bn1,conv1,bn2,prelu,conv2,bn3,downsample},
    bn2, fc, features."""
    chans = [round(c * width) for c in STAGE_CHANNELS]
    shapes = {"conv1.weight": (chans[0], 3, 3, 3)} | bn_shapes("bn1", chans[0]) | {"prelu.weight": (chans[0],)}
    inplanes = chans[0]
    for stage, (planes, blocks) in enumerate(zip(chans, plan), start=1):
        for i in range(blocks):
            p, cin = f"layer{stage}.{i}", inplanes if i == 0 else planes
            shapes |= bn_shapes(f"{p}.bn1", cin) | {f"{p}.conv1.weight": (planes, cin, 3, 3)}
            shapes |= bn_shapes(f"{p}.bn2", planes) | {f"{p}.prelu.weight": (planes,)}
            shapes |= {f"{p}.conv2.weight": (planes, planes, 3, 3)} | bn_shapes(f"{p}.bn3", planes)
            if i == 0:  # stride 2 in every stage: insightface always gives the first block a 1×1 downsample
                shapes |= {f"{p}.downsample.0.weight": (planes, cin, 1, 1)} | bn_shapes(f"{p}.downsample.1", planes)
        inplanes = planes
    shapes |= bn_shapes("bn2", chans[3]) | {"fc.weight": (512, chans[3] * 49), "fc.bias": (512,)}
    return shapes | bn_shapes("features", 512)


def adaface_shapes(plan, width=1.0):
    """AdaFace Backbone(112, depth, 'ir'): input_layer, body.k (BasicBlockIR), output_layer."""
    chans = [round(c * width) for c in STAGE_CHANNELS]
    shapes = {"input_layer.0.weight": (chans[0], 3, 3, 3)} | bn_shapes("input_layer.1", chans[0])
    shapes |= {"input_layer.2.weight": (chans[0],)}
    k, in_channel = 0, chans[0]
    for depth, units in zip(chans, plan):
        for i in range(units):
            cin, p = in_channel if i == 0 else depth, f"body.{k}"
            if cin != depth:  # otherwise MaxPool2d(1, stride): no parameters
                shapes |= {f"{p}.shortcut_layer.0.weight": (depth, cin, 1, 1)}
                shapes |= bn_shapes(f"{p}.shortcut_layer.1", depth)
            shapes |= bn_shapes(f"{p}.res_layer.0", cin) | {f"{p}.res_layer.1.weight": (depth, cin, 3, 3)}
            shapes |= bn_shapes(f"{p}.res_layer.2", depth) | {f"{p}.res_layer.3.weight": (depth,)}
            shapes |= {f"{p}.res_layer.4.weight": (depth, depth, 3, 3)} | bn_shapes(f"{p}.res_layer.5", depth)
            k += 1
        in_channel = depth
    shapes |= bn_shapes("output_layer.0", chans[3])
    shapes |= {"output_layer.3.weight": (512, chans[3] * 49), "output_layer.3.bias": (512,)}
    return shapes | bn_shapes("output_layer.4", 512, affine=False)


def mbf_units(blocks=(1, 4, 6, 2), scale=2):
    """insightface MobileFaceNet as (prefix, cin, cout, kernel, stride, groups, prelu, role) per conv + BN (+ PReLU);
    role "save" marks the first conv of a residual unit, "add" its last (the input is added after it)."""
    low, high = 64 * scale, 128 * scale
    units = [("layers.0.layers", 3, low, 3, 2, 1, True, None)]

    def depthwise(prefix, cin, cout, inner, stride, residual):
        return [
            (f"{prefix}.layers.0.layers", cin, inner, 1, 1, 1, True, "save" if residual else None),
            (f"{prefix}.layers.1.layers", inner, inner, 3, stride, inner, True, None),
            (f"{prefix}.layers.2.layers", inner, cout, 1, 1, 1, False, "add" if residual else None),
        ]

    def residual(prefix, channels, count, inner):
        return [u for j in range(count) for u in depthwise(f"{prefix}.layers.{j}", channels, channels, inner, 1, True)]

    if blocks[0] == 1:
        units.append(("layers.1.layers", low, low, 3, 1, 64, True, None))
    else:
        units += residual("layers.1", low, blocks[0], 128)
    units += depthwise("layers.2", low, low, 128, 2, False) + residual("layers.3", low, blocks[1], 128)
    units += depthwise("layers.4", low, high, 256, 2, False) + residual("layers.5", high, blocks[2], 256)
    units += depthwise("layers.6", high, high, 512, 2, False) + residual("layers.7", high, blocks[3], 256)
    units.append(("conv_sep.layers", high, 512, 1, 1, 1, True, None))
    units.append(("features.layers.0.layers", 512, 512, 7, 1, 512, False, None))  # GDC: unpadded 7×7 depthwise
    return units


def mbf_shapes(blocks=(1, 4, 6, 2), scale=2):
    shapes = {}
    for prefix, cin, cout, kernel, _, groups, prelu, _ in mbf_units(blocks, scale):
        shapes |= {f"{prefix}.0.weight": (cout, cin // groups, kernel, kernel)} | bn_shapes(f"{prefix}.1", cout)
        if prelu:
            shapes[f"{prefix}.2.weight"] = (cout,)
    return shapes | {"features.layers.2.weight": (512, 512)} | bn_shapes("features.layers.3", 512)


def random_state(shapes, seed=0):
    """Weights that keep activations of order one through a deep network, BN statistics far from identity."""
    generator = torch.Generator().manual_seed(seed)

    def draw(key, shape):
        if key.endswith("num_batches_tracked"):
            return torch.tensor(7)
        if key.endswith("running_var"):
            return torch.rand(shape, generator=generator) + 0.5
        if key.endswith(("running_mean", "bias")):
            return torch.randn(shape, generator=generator) * 0.1
        if len(shape) == 1:  # BN scale or PReLU slope
            return torch.rand(shape, generator=generator) * 0.5 + (0.1 if "prelu" in key or ".2." in key else 0.75)
        fan_in = torch.Size(shape[1:]).numel()
        return torch.randn(shape, generator=generator) * (1.0 / fan_in) ** 0.5

    return {key: draw(key, shape) for key, shape in shapes.items()}


# --- independent forward passes -----------------------------------------------------------------------------------


def bn(sd, prefix, x):
    return F.batch_norm(x, sd[f"{prefix}.running_mean"], sd[f"{prefix}.running_var"], sd.get(f"{prefix}.weight"),
                        sd.get(f"{prefix}.bias"), training=False, eps=1e-5)


def iresnet_forward(sd, plan, x):
    x = F.prelu(bn(sd, "bn1", F.conv2d(x, sd["conv1.weight"], padding=1)), sd["prelu.weight"])
    for stage, blocks in enumerate(plan, start=1):
        for i in range(blocks):
            p, stride = f"layer{stage}.{i}", 2 if i == 0 else 1
            out = F.conv2d(bn(sd, f"{p}.bn1", x), sd[f"{p}.conv1.weight"], padding=1)
            out = F.prelu(bn(sd, f"{p}.bn2", out), sd[f"{p}.prelu.weight"])
            out = bn(sd, f"{p}.bn3", F.conv2d(out, sd[f"{p}.conv2.weight"], stride=stride, padding=1))
            if i == 0:
                x = bn(sd, f"{p}.downsample.1", F.conv2d(x, sd[f"{p}.downsample.0.weight"], stride=2))
            x = out + x
    x = F.linear(bn(sd, "bn2", x).flatten(1), sd["fc.weight"], sd["fc.bias"])
    return bn(sd, "features", x)


def adaface_forward(sd, plan, x):
    """AdaFace's Backbone.forward: returns (x / ‖x‖, ‖x‖)."""
    x = F.conv2d(x, sd["input_layer.0.weight"], padding=1)
    x = F.prelu(bn(sd, "input_layer.1", x), sd["input_layer.2.weight"])
    k = 0
    for units in plan:
        for i in range(units):
            p, stride = f"body.{k}", 2 if i == 0 else 1
            if f"{p}.shortcut_layer.0.weight" in sd:
                shortcut = F.conv2d(x, sd[f"{p}.shortcut_layer.0.weight"], stride=stride)
                shortcut = bn(sd, f"{p}.shortcut_layer.1", shortcut)
            else:
                shortcut = F.max_pool2d(x, 1, stride)
            res = F.conv2d(bn(sd, f"{p}.res_layer.0", x), sd[f"{p}.res_layer.1.weight"], padding=1)
            res = F.prelu(bn(sd, f"{p}.res_layer.2", res), sd[f"{p}.res_layer.3.weight"])
            res = bn(sd, f"{p}.res_layer.5", F.conv2d(res, sd[f"{p}.res_layer.4.weight"], stride=stride, padding=1))
            x, k = res + shortcut, k + 1
    x = bn(sd, "output_layer.0", x).flatten(1)
    x = bn(sd, "output_layer.4", F.linear(x, sd["output_layer.3.weight"], sd["output_layer.3.bias"]))
    norm = torch.norm(x, 2, 1, True)
    return x / norm, norm


def mbf_forward(sd, x, blocks=(1, 4, 6, 2), scale=2):
    for prefix, _, _, kernel, stride, groups, prelu, role in mbf_units(blocks, scale):
        if role == "save":
            shortcut = x
        padding = 0 if kernel == 7 else kernel // 2
        x = bn(sd, f"{prefix}.1", F.conv2d(x, sd[f"{prefix}.0.weight"], stride=stride, padding=padding, groups=groups))
        if prelu:
            x = F.prelu(x, sd[f"{prefix}.2.weight"])
        if role == "add":
            x = x + shortcut
    x = F.linear(x.flatten(1), sd["features.layers.2.weight"])
    return bn(sd, "features.layers.3", x)


# --- the tests ----------------------------------------------------------------------------------------------------


def faces(seed=1, count=2):
    """Normalised crops as the networks receive them: (x − 127.5) / 127.5 of random pixels."""
    pixels = torch.randint(0, 256, (count, 3, 112, 112), generator=torch.Generator().manual_seed(seed))
    return (pixels.float() - 127.5) / 127.5


def relative_difference(ours, reference):
    return ((ours - reference).abs().max() / reference.abs().max()).item()


def network(name, weights, **options):
    return build_backbone(registry.backbone(name), str(weights), options)


def meta_shapes(name, **options):
    with torch.device("meta"):
        model = registry.backbone(name).build("random", **options)
    return {key: tuple(tensor.shape) for key, tensor in model.state_dict().items()}


@pytest.mark.parametrize("depth", sorted(IRESNET_PLANS))
def test_iresnet_layer_plan_of_every_depth_is_insightfaces(depth):
    assert meta_shapes("iresnet", depth=depth, width=1.0, embedding=512) == iresnet_shapes(IRESNET_PLANS[depth])


@pytest.mark.parametrize("depth", [18, 34, 50, 100, 101])
def test_adaface_layer_plan_of_every_depth_is_adafaces(depth):
    plan = ADAFACE_PLANS[100 if depth == 101 else depth]
    renames = adaface_renames(tuple(plan))
    converted = {renames[key]: shape for key, shape in adaface_shapes(plan).items()}
    assert meta_shapes("adaface-ir", depth=depth, width=1.0) == converted


@pytest.mark.parametrize("variant, blocks, scale", [("mbf", (1, 4, 6, 2), 2), ("mbf_large", (2, 8, 12, 4), 4)])
def test_mbf_layer_plan_is_insightfaces(variant, blocks, scale):
    assert meta_shapes("mbf", variant=variant, embedding=512) == mbf_shapes(blocks, scale)


def fp16(state):
    return {k: v.half() if v.is_floating_point() else v for k, v in state.items()}


@pytest.mark.parametrize("layout, width", [("plain", 1.0), ("module.", 0.25), ("fp16", 0.25)])
def test_iresnet18_checkpoints_give_insightfaces_embeddings(tmp_path, layout, width):
    state = random_state(iresnet_shapes(IRESNET_PLANS[18], width))
    saved = {"plain": state, "module.": {f"module.{k}": v for k, v in state.items()}, "fp16": fp16(state)}[layout]
    torch.save(saved, tmp_path / "backbone.pth")
    reference_state = {k: v.float() if v.is_floating_point() else v for k, v in saved.items()}
    reference_state = {k.removeprefix("module."): v for k, v in reference_state.items()}
    x = faces()
    with torch.inference_mode():
        ours = network("iresnet", tmp_path / "backbone.pth", depth=18, width=width)(x)
        reference = iresnet_forward(reference_state, IRESNET_PLANS[18], x)
    assert relative_difference(ours, reference) < 1e-4


def lightning_checkpoint(state):
    """What AdaFace's PyTorch Lightning training writes: the Trainer's model and head under ``state_dict``."""
    model = {f"model.{k}": v for k, v in state.items()}
    return {
        "epoch": 26,
        "global_step": 123456,
        "pytorch-lightning_version": "1.8.6",
        "state_dict": {**model, "head.kernel": torch.randn(512, 10), "head.t": torch.zeros(1)},
        "optimizer_states": [{"state": {}, "param_groups": [{"lr": 0.1, "momentum": 0.9, "params": [0, 1]}]}],
        "lr_schedulers": [{"milestones": collections.Counter([12, 20, 24]), "gamma": 0.1, "last_epoch": 26}],
        "hyper_parameters": {"arch": "ir_18", "head": "adaface", "m": 0.4, "h": 0.333},
    }


@pytest.mark.parametrize("layout, width", [("lightning", 1.0), ("bare", 0.25)])
def test_adaface_ir18_checkpoints_give_adafaces_embeddings(tmp_path, layout, width):
    state = random_state(adaface_shapes(ADAFACE_PLANS[18], width), seed=2)
    torch.save(lightning_checkpoint(state) if layout == "lightning" else state, tmp_path / "adaface_ir18.ckpt")
    x = faces(seed=4)
    with torch.inference_mode():
        bgr = x.flip(1)  # as AdaFace feeds its networks
        ours = network("adaface-ir", tmp_path / "adaface_ir18.ckpt", depth=18, width=width)(bgr)
        unit, norm = adaface_forward(state, ADAFACE_PLANS[18], bgr)
    assert relative_difference(ours, unit * norm) < 1e-4
    assert relative_difference(F.normalize(ours), unit) < 1e-4


def test_adaface_input_is_bgr_and_flip_fusion_adds_unnormalised_features():
    spec = registry.backbone("adaface-ir")
    assert spec.input.channel_order == "BGR" and spec.flip_fusion == "sum"
    assert registry.backbone("iresnet").input.channel_order == "RGB"


@pytest.mark.parametrize("layout", ["plain", "module.", "fp16"])
def test_mbf_checkpoints_give_insightfaces_embeddings(tmp_path, layout):
    state = random_state(mbf_shapes(), seed=3)
    saved = {"plain": state, "module.": {f"module.{k}": v for k, v in state.items()}, "fp16": fp16(state)}[layout]
    torch.save(saved, tmp_path / "mbf.pth")
    reference_state = {k.removeprefix("module."): v.float() if v.is_floating_point() else v for k, v in saved.items()}
    x = faces(seed=5)
    with torch.inference_mode():
        ours = network("mbf", tmp_path / "mbf.pth")(x)
        reference = mbf_forward(reference_state, x)
    assert relative_difference(ours, reference) < 1e-4


def test_a_checkpoint_of_another_depth_names_the_depth_to_use(tmp_path):
    torch.save(random_state(iresnet_shapes(IRESNET_PLANS[34], width=0.25)), tmp_path / "r34.pth")
    with pytest.raises(DataError, match=r"depth-34 network: --option depth=34"):
        registry.backbone("iresnet").build(str(tmp_path / "r34.pth"), depth=18, width=0.25)


def test_an_adaface_checkpoint_of_another_depth_names_the_depth_to_use(tmp_path):
    torch.save(lightning_checkpoint(random_state(adaface_shapes(ADAFACE_PLANS[34], width=0.25))), tmp_path / "a.ckpt")
    with pytest.raises(DataError, match=r"depth-34 network: --option depth=34"):
        registry.backbone("adaface-ir").build(str(tmp_path / "a.ckpt"), depth=50, width=0.25)


def test_a_foreign_checkpoint_gets_the_mismatch_table(tmp_path):
    torch.save(random_state(mbf_shapes()), tmp_path / "mbf.pth")
    with pytest.raises(DataError, match="fits none of the layouts") as caught:
        registry.backbone("iresnet").build(str(tmp_path / "mbf.pth"), depth=18, width=1.0, embedding=512)
    assert "missing" in caught.value.details and "unexpected" in caught.value.details


@pytest.mark.parametrize(
    "name, options, message",
    [
        ("iresnet", {"depth": 152}, "depth 152: choose one of 18, 34, 50, 100, 200"),
        ("iresnet", {"width": 0.0}, "width 0.0"),
        ("adaface-ir", {"depth": 200}, "depth 200: choose one of 18, 34, 50, 100, 101"),
        ("mbf", {"variant": "mbf_small"}, "variant 'mbf_small': choose one of mbf, mbf_large"),
    ],
)
def test_unknown_options_are_refused_with_the_choices(name, options, message):
    with pytest.raises(ValueError, match=message):
        registry.backbone(name).build("random", **options)
