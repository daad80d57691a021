import numpy as np
import pytest
import torch

from lrbench import DegradationSpec, hookimpl, registry
from lrbench.data.degrade import parse_dfs, probe_size
from lrbench.errors import UsageError
from lrbench.eval.engine import EvalSettings, evaluate

SEED_SIZES = [
    "96×112",
    "48×56",
    "32×37",
    "24×28",
    "19×22",
    "16×18",
    "13×16",
    "12×14",
    "10×12",
    "9×11",
    "8×10",
    "8×9",
    "7×8",
]


def test_probe_sizes_match_the_seed_table():
    assert [f"{w}×{h}" for w, h in (probe_size((96, 112), df) for df in range(1, 14))] == SEED_SIZES


@pytest.mark.parametrize(
    ("text", "dfs"),
    [("8", [8]), ("1-13", list(range(1, 14))), ("1,2,4,8", [1, 2, 4, 8]), ("4,1-3,4", [1, 2, 3, 4])],
)
def test_parse_dfs(text, dfs):
    assert parse_dfs(text, (96, 112)) == dfs


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("0", "at least 1"),
        ("-2", "at least 1"),
        ("99", "larger than the 96×112"),
        ("x", "expected DFs"),
        ("5-2", "backwards"),
        ("1.5", "expected DFs"),
    ],
)
def test_invalid_dfs_are_usage_errors(text, message):
    with pytest.raises(UsageError, match=message):
        parse_dfs(text, (96, 112))


@pytest.mark.parametrize("name", ["bicubic", "bilinear", "area", "seed", "mix"])
@pytest.mark.parametrize("df", [1, 2, 4, 8, 13])
def test_degradations_keep_shape_and_range(name, df):
    batch = torch.rand(3, 3, 112, 96) * 255
    out = registry.degradation(name).apply(batch, df)
    assert out.shape == batch.shape
    assert out.min() >= 0 and out.max() <= 255
    if df == 1:
        assert torch.equal(out, batch)


@pytest.mark.parametrize("name", ["bicubic", "bilinear", "area", "seed", "mix"])
def test_degraded_image_is_constant_within_the_probe_grid_information(name):
    # a pattern at the probe's own resolution survives; detail finer than the probe is lost
    fine = torch.zeros(1, 3, 112, 96)
    fine[..., ::2, :] = 255  # alternating rows: far above the Nyquist limit of a 12×14 probe
    out = registry.degradation(name).apply(fine, 8)
    assert out.std() < 0.1 * fine.std()


def test_area_averages_each_block_of_the_crop_at_an_integer_df():
    batch = torch.rand(2, 3, 112, 96) * 255
    small = torch.nn.functional.avg_pool2d(batch, 8)  # 12×14 blocks of 8×8 pixels: the probe's exact pixels
    expected = torch.nn.functional.interpolate(small, size=(112, 96), mode="bicubic", align_corners=False)
    torch.testing.assert_close(registry.degradation("area").apply(batch, 8), expected.clamp(0, 255))


# -- mix: one kernel per image, drawn from several -------------------------------------------------------------

def _mixed(batch, df, kernels, seeds=None):
    return registry.degradation("mix").apply(batch, df, kernels=kernels, seeds=seeds)


def test_mix_degrades_each_image_by_one_of_its_kernels_and_uses_them_all():
    batch = torch.rand(64, 3, 56, 48) * 255
    kernels = ["bicubic", "area", "seed"]
    out = _mixed(batch, 4, ",".join(kernels))
    each = [registry.degradation(name).apply(batch, 4) for name in kernels]
    chosen = [[k for k, image in enumerate(each) if torch.allclose(out[i], image[i])] for i in range(len(batch))]
    assert all(len(match) == 1 for match in chosen), "every image is exactly one kernel's output"
    assert {match[0] for match in chosen} == {0, 1, 2}


def test_mix_with_seeds_gives_each_image_its_kernel_and_noise_whatever_its_batch():
    batch = torch.rand(12, 3, 56, 48) * 255
    seeds = torch.arange(100, 112)
    whole = _mixed(batch, 4, "bicubic,area", seeds)
    torch.testing.assert_close(_mixed(batch[5:9], 4, "bicubic,area", seeds[5:9]), whole[5:9])
    area = registry.degradation("area").apply(batch, 4)
    assert all(torch.equal(whole[i], area[i]) == bool(seeds[i] % 2) for i in range(12))


def test_mix_passes_a_random_kernel_the_images_seeds(noisy):
    batch = torch.rand(6, 3, 56, 48) * 255
    seeds = torch.arange(6) * 2  # even seeds: the first kernel, noisy, for every image
    first = _mixed(batch, 4, "noisy,bicubic", seeds)
    torch.testing.assert_close(_mixed(batch[3:], 4, "noisy,bicubic", seeds[3:]), first[3:])
    assert not torch.equal(first, registry.degradation("bicubic").apply(batch, 4))


@pytest.mark.parametrize("kernels", ["bicubic,nope", "", "mix,bicubic"])
def test_mix_refuses_kernels_it_cannot_use_naming_the_option(kernels):
    with pytest.raises(UsageError, match="--degradation-option kernels="):
        _mixed(torch.rand(2, 3, 56, 48) * 255, 4, kernels)


def test_seed_matches_opencv_resize_down_and_back_at_every_df():
    """The seed did ``cv2.resize(img, (int(96/DF), int(112/DF)))`` and back with OpenCV's defaults on uint8 images.

    OpenCV's INTER_LINEAR rounds fixed-point (11-bit) weights at each of the two resizes, lrbench rounds
    exact float results, so a pixel may land one grey level apart per resize. Measured on random crops,
    the worst case: at most 2 levels, 0.2 % of pixels more than 1 apart, mean 0.26 levels. Antialiasing,
    another interpolation or a wrong probe size is tens of levels off on most pixels.
    """
    import cv2  # opencv-python-headless, in the dev extra

    crops = np.random.default_rng(0).integers(0, 256, (8, 112, 96, 3), dtype=np.uint8)
    batch = torch.from_numpy(crops).permute(0, 3, 1, 2).float()
    for df in range(1, 14):
        width, height = probe_size((96, 112), df)
        expected = np.stack([cv2.resize(cv2.resize(crop, (width, height)), (96, 112)) for crop in crops])
        got = registry.degradation("seed").apply(batch, df).permute(0, 2, 3, 1).numpy()
        assert np.array_equal(got, got.round()), f"DF {df}: not on uint8 levels"
        apart = np.abs(got - expected)
        assert apart.max() <= 2, f"DF {df}"
        assert (apart > 1).mean() < 0.005 and apart.mean() < 0.3, f"DF {df}"


# -- random degradations: each image its own reproducible randomness; DF 1 and the gallery never degraded ------

class NoisyPlugin:
    """``noisy``: bicubic down and up plus per-image noise from the seeds lrbench hands it; counts its calls."""

    calls: list = []

    @staticmethod
    def noisy(batch, df, amount: float = 20.0, seeds=None):
        NoisyPlugin.calls.append((df, len(batch)))
        out = registry.degradation("bicubic").apply(batch, df)
        noise = torch.stack([torch.randn(batch.shape[1:], generator=torch.Generator().manual_seed(int(seed)))
                             for seed in seeds])
        return (out + amount * noise).clamp(0, 255)

    @hookimpl
    def register_degradations(self, register):
        register(DegradationSpec("noisy", self.noisy, "bicubic plus per-image noise", options={"amount": 20.0}))


@pytest.fixture
def noisy(plugin_manager):
    plugin_manager.register_for_test(NoisyPlugin(), name="noisy-plugin")
    NoisyPlugin.calls.clear()
    return NoisyPlugin.calls


def _scores(synth_data, batch_size, **settings):
    run = evaluate(EvalSettings(backbone="lbp", data=synth_data.lfw_images, pairs=synth_data.pairs, aligned=True,
                                degradation="noisy", batch_size=batch_size, workers=1, show_progress="off",
                                cache_dir=None, **settings))
    return run.scores.sort_values(["df", "pair"])["score"].to_numpy()


def test_a_random_degradation_gives_the_same_scores_at_batch_sizes_1_5_and_32(noisy, synth_data):
    first = _scores(synth_data, 1, dfs="4")
    for batch_size in (5, 32):
        np.testing.assert_array_equal(_scores(synth_data, batch_size, dfs="4"), first)
    assert not np.array_equal(_scores(synth_data, 5, dfs="4", seed=1), first), "the run's seed matters"


def test_df_1_and_the_gallery_never_pass_through_a_degradation(noisy, synth_data):
    from lrbench.data.pairs import ProtocolDefinition

    pairs = ProtocolDefinition("x", "x").load(synth_data.lfw_images, synth_data.pairs)
    _scores(synth_data, 8, dfs="1,4", mode="probe")
    assert {df for df, _ in noisy} == {4}
    assert sum(count for _, count in noisy) == len(np.unique(pairs.second)), "only the probes at DF 4"


def test_image_seeds_depend_on_name_df_and_run_seed_only():
    from lrbench.data.degrade import image_seeds

    seeds = image_seeds(["a/1.jpg", "b/2.jpg"], 4, 0)
    assert seeds.dtype == np.int64 and (seeds >= 0).all() and seeds[0] != seeds[1]
    assert image_seeds(["b/2.jpg"], 4, 0)[0] == seeds[1]
    assert image_seeds(["a/1.jpg"], 5, 0)[0] != seeds[0] and image_seeds(["a/1.jpg"], 4, 1)[0] != seeds[0]
