"""Device paths: the same extractor code on CPU and (when present) CUDA, in every precision and layout."""

import numpy as np
import pytest
import torch

from lrbench import NumericalError, registry
from lrbench.eval.engine import FeatureExtractor
from lrbench.eval.models import build_backbone
from lrbench.eval.precision import require_finite

DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA"))]


def extractor(device, precision="fp32", channels_last=False, fusion="concat", batch_size=2, mirror=False):
    """SphereFace-4 (random weights, always the same) over five random crops, or over their mirror images."""
    spec = registry.backbone("sphereface")
    torch.manual_seed(0)
    model = build_backbone(spec, "random", {"depth": 4})
    crops = np.random.default_rng(0).integers(0, 256, (5, 112, 96, 3), dtype=np.uint8)
    if mirror:
        crops = np.ascontiguousarray(crops[:, :, ::-1])
    return FeatureExtractor(model, crops, spec.input, registry.degradation("bicubic").apply, fusion, batch_size,
                            torch.device(device), show_progress=False, precision=precision,
                            channels_last=channels_last)


@pytest.mark.parametrize("device", DEVICES)
def test_channels_last_does_not_change_features(device):
    rows = np.arange(5)
    reference = extractor("cpu").features(4, rows)
    torch.testing.assert_close(extractor(device, channels_last=True).features(4, rows), reference,
                               rtol=1e-4, atol=1e-4)


def test_batch_size_and_row_order_do_not_change_features():
    reference = extractor("cpu", batch_size=128).features(4, np.arange(5))
    for batch_size in (1, 3):  # one image per batch; a short last batch
        features = extractor("cpu", batch_size=batch_size).features(4, np.array([3, 0, 4, 1, 2]))
        torch.testing.assert_close(features, reference, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("device", DEVICES)
def test_bf16_is_close_to_fp32_but_really_runs_in_bf16(device):
    rows = np.arange(5)
    fp32, bf16 = extractor(device).features(2, rows), extractor(device, "bf16").features(2, rows)
    cosine = torch.nn.functional.cosine_similarity(fp32, bf16, dim=1)
    assert bf16.dtype == torch.float32 and (cosine > 0.99).all()
    assert (fp32 - bf16).abs().max() > 1e-3 * fp32.abs().max()  # bf16 keeps 8 bits: fp32 would agree to 1e-6


@pytest.mark.parametrize("device", DEVICES)
def test_flip_fusions_add_the_mirror_images_features(device):
    rows = np.arange(5)
    concat = extractor(device, fusion="concat").features(4, rows)
    plain = extractor(device, fusion="none").features(4, rows)
    summed = extractor(device, fusion="sum").features(4, rows)
    mirrored = extractor(device, fusion="none", mirror=True).features(4, rows)
    assert concat.shape == (5, 1024) and plain.shape == summed.shape == (5, 512)
    # the mirror image's features differ by ~1e-2: far beyond the tolerance (CUDA may convolve in TF32)
    assert (plain - mirrored).abs().max() > 1e-3
    torch.testing.assert_close(concat[:, :512], plain, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(concat[:, 512:], mirrored, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(summed, plain + mirrored, rtol=1e-4, atol=1e-4)


def test_hr_features_are_computed_once_per_sweep():
    ex = extractor("cpu")
    calls = []
    original = ex._compute
    ex._compute = lambda df, rows: calls.append((df, len(rows))) or original(df, rows)
    ex.features(1, np.array([0, 1, 2]))
    ex.features(1, np.array([1, 2, 3, 4]))
    ex.features(1, np.array([0, 4]))
    assert calls == [(1, 3), (1, 2)]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA (CPU autocast keeps these layers in fp32)")
def test_fp16_overflow_is_a_clear_error_naming_the_cure():
    features = extractor("cuda", precision="fp16")
    with torch.no_grad():
        features.model.fc5.weight.fill_(1e5)  # beyond fp16's largest value, 65504: inf once autocast casts it
    with pytest.raises(NumericalError, match=r"features at DF 4: .* exceed fp16's range .* use --precision bf16"):
        features.features(4, np.arange(5))


def test_non_finite_values_are_refused_with_their_likely_cause():
    require_finite(torch.tensor([1.0, -65504.0]), "features", "fp16")
    with pytest.raises(NumericalError, match=r"^features: NaN or infinite .* fp16's range"):
        require_finite(torch.tensor([1.0, float("inf")]), "features", "fp16")
    with pytest.raises(NumericalError, match=r"^loss: NaN or infinite values under --precision bf16: .* diverged"):
        require_finite(torch.tensor(float("nan")), "loss", "bf16")
