"""What a network is fed: InputSpec.normalise turns 0…255 RGB crops into the backbone's input."""

import torch

from lrbench import InputSpec, SPHEREFACE_96x112, registry


def pixel(r: float, g: float, b: float) -> torch.Tensor:
    """A 1×1 NCHW RGB image."""
    return torch.tensor([r, g, b]).view(1, 3, 1, 1)


def test_bgr_input_swaps_channels_before_mean_and_std_per_channel():
    spec = InputSpec(SPHEREFACE_96x112, "BGR", mean=(1.0, 2.0, 3.0), std=(2.0, 4.0, 8.0))
    # channel 0 is blue (30), normalised with the first mean and std
    assert spec.normalise(pixel(10, 20, 30)).flatten().tolist() == [(30 - 1) / 2, (20 - 2) / 4, (10 - 3) / 8]


def test_rgb_input_keeps_the_channel_order():
    spec = InputSpec(SPHEREFACE_96x112, "RGB", mean=(1.0, 2.0, 3.0), std=(2.0, 4.0, 8.0))
    assert spec.normalise(pixel(10, 20, 30)).flatten().tolist() == [(10 - 1) / 2, (20 - 2) / 4, (30 - 3) / 8]


def test_sphereface_input_divides_by_128_and_its_seed_input_by_127_5():
    spec = registry.backbone("sphereface")
    assert spec.input.normalise(pixel(255, 0, 127.5)).flatten().tolist() == [0.0, -127.5 / 128, 127.5 / 128]
    assert spec.seed_input.normalise(pixel(255, 0, 127.5)).flatten().tolist() == [0.0, -1.0, 1.0]
