"""Options that would make a network larger than the machine's memory are refused before it is built."""

import pytest
import torch
from cli_helpers import invoke, one_line_error

from lrbench import BackboneSpec, InputSpec, SPHEREFACE_96x112, UsageError, registry
from lrbench.eval import models
from lrbench.eval.models import build_backbone
from lrbench.training.networks import trainable_network

MIB = 2**20


@pytest.fixture
def memory(monkeypatch):
    """This machine as one with ``memory(bytes)`` available."""
    return lambda size: monkeypatch.setattr(models, "_available_memory", lambda: size, raising=False)


def test_options_making_the_network_larger_than_memory_are_refused_naming_them_and_the_size(memory):
    memory(32 * MIB)  # SphereFace-4 at width 1 holds 48 MiB of parameters
    with pytest.raises(UsageError) as caught:
        build_backbone(registry.backbone("sphereface"), "random", {"width": 1.0, "depth": 4})  # width 1 is the default
    assert str(caught.value) == ("--option depth=4: backbone 'sphereface' would have 1.26e+07 parameters "
                                 "(47.9 MiB of tensors), more than the 32 MiB of memory available here")


def test_a_network_that_fits_is_built_as_before(memory):
    memory(32 * MIB)
    network = build_backbone(registry.backbone("sphereface"), "random", {"depth": 4, "width": 0.25})  # 11 MiB
    assert next(network.parameters()).device.type == "cpu"


def test_the_estimate_builds_on_the_meta_device_only_and_the_defaults_are_not_estimated(memory):
    devices = []

    def build(weights, channels: int = 8):
        devices.append(torch.empty(0).device.type)  # where the build's tensors are made
        return torch.nn.Sequential(torch.nn.Conv2d(3, channels, 3), torch.nn.AdaptiveAvgPool2d(1),
                                   torch.nn.Flatten())

    spec = BackboneSpec("grows", build, InputSpec(SPHEREFACE_96x112), None, options={"channels": 8})
    memory(MIB)
    build_backbone(spec, "random", {"channels": 8})
    assert devices == ["cpu"]  # the default: built once, not estimated
    with pytest.raises(UsageError, match=r"^--option channels=100000: backbone 'grows' would have 2\.8e\+06 "):
        build_backbone(spec, "random", {"channels": 100_000})
    assert devices == ["cpu", "meta"]  # refused before the real build


def test_a_network_whose_sizes_overflow_64_bits_is_refused_as_beyond_any_memory(tmp_path, synth_data):
    result = invoke("run", "-b", "sphereface", "-w", "random", "--option", "width=1e300", "--data",
                    synth_data.lfw_root, "--out", tmp_path / "out")
    one_line_error(result, 2, "--option width=1e+300: backbone 'sphereface' would have tensors too large for 64-bit "
                              "sizes, beyond any memory")
    assert not (tmp_path / "out").exists()


def test_width_1e6_is_one_line_with_the_estimated_size(tmp_path, synth_data):
    result = invoke("run", "-b", "sphereface", "-w", "random", "--option", "width=1e6", "--option", "depth=4",
                    "--data", synth_data.lfw_root, "--out", tmp_path / "out")
    line = one_line_error(result, 2, "--option depth=4 width=1e+06: backbone 'sphereface' would have 1.55e+18 "
                                     "parameters (5.37 EiB of tensors), more than the ")
    assert line.endswith(" of memory available here")


def test_training_a_network_from_scratch_is_estimated_too(memory):
    memory(32 * MIB)
    with pytest.raises(UsageError, match=r"^--option depth=4 width=2: backbone 'sphereface' would have 2\.82e\+07 "):
        trainable_network("sphereface", None, ["depth=4", "width=2"])
