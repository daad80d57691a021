"""Registry-driven checks: every registered backbone, degradation and protocol works on tiny inputs."""

import pytest
import torch

from lrbench import registry
from lrbench.errors import UsageError
from lrbench.eval.models import build_backbone

BACKBONES = sorted(registry.collect("backbone"))
DEGRADATIONS = sorted(registry.collect("degradation"))
PROTOCOLS = sorted(registry.collect("protocol"))


@pytest.mark.parametrize("name", BACKBONES)
def test_backbone_forward_matches_its_spec(name):
    spec = registry.backbone(name)
    if spec.specialise is not None:
        pytest.skip("runs a model file under a chosen convention: tests/test_onnx_backbones.py")
    try:
        model = build_backbone(spec, None)
    except UsageError:  # weights needed or not installed: the untrained architecture instead
        model = build_backbone(spec, "random")
    width, height = spec.input.template.size
    crops = torch.randint(0, 256, (2, 3, height, width)).float()
    with torch.inference_mode():
        out = model(spec.input.normalise(crops))
    assert out.shape == (2, spec.embedding_size())
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("name", DEGRADATIONS)
def test_degradation_keeps_shape_and_range(name):
    batch = torch.rand(2, 3, 112, 96) * 255
    out = registry.degradation(name).apply(batch, 4)
    assert out.shape == batch.shape and out.min() >= 0 and out.max() <= 255
    assert not torch.equal(out, batch)


# The registered protocols whose files the synthetic LFW set imitates (the others, XQLFW's and CALFW's
# folders and pairs files and the identification layouts, have tests of their own on data in their formats).
LFW_FORMAT_PROTOCOLS = [name for name in PROTOCOLS if name == "lfw-view2"]


@pytest.mark.parametrize("name", LFW_FORMAT_PROTOCOLS)
def test_protocol_loads_the_synthetic_set(name, synth_data):
    pair_set = registry.protocol(name).load(synth_data.lfw_root, synth_data.pairs)
    assert len(pair_set.same) == len(pair_set.first) == len(pair_set.second) == len(pair_set.folds)
    assert pair_set.same.any() and (~pair_set.same).any()
    assert max(pair_set.first.max(), pair_set.second.max()) == len(pair_set.images) - 1
