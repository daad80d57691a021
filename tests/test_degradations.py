import pytest
import torch

from lrbench import registry
from lrbench.degrade import parse_dfs, probe_size, resize_down_up
from lrbench.errors import UsageError

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


@pytest.mark.parametrize("name", ["bicubic", "bilinear", "seed"])
@pytest.mark.parametrize("df", [1, 2, 4, 8, 13])
def test_degradations_keep_shape_and_range(name, df):
    batch = torch.rand(3, 3, 112, 96) * 255
    out = registry.degradation(name).apply(batch, df)
    assert out.shape == batch.shape
    assert out.min() >= 0 and out.max() <= 255
    if df == 1:
        assert torch.equal(out, batch)


@pytest.mark.parametrize("name", ["bicubic", "bilinear", "seed"])
def test_degraded_image_is_constant_within_the_probe_grid_information(name):
    # a pattern at the probe's own resolution survives; detail finer than the probe is lost
    fine = torch.zeros(1, 3, 112, 96)
    fine[..., ::2, :] = 255  # alternating rows: far above the Nyquist limit of a 12×14 probe
    out = registry.degradation(name).apply(fine, 8)
    assert out.std() < 0.1 * fine.std()


def test_seed_preset_is_bilinear_without_antialias_on_uint8_levels():
    batch = torch.rand(2, 3, 112, 96) * 255
    out = registry.degradation("seed").apply(batch, 4)
    expected = resize_down_up(batch, 4, down="bilinear", up="bilinear", antialias=False, quantize=True)
    assert torch.equal(out, expected)
    assert torch.equal(out, out.round())
    small = torch.nn.functional.interpolate(batch, size=(28, 24), mode="bilinear", align_corners=False)
    assert torch.allclose(
        torch.nn.functional.interpolate(
            small.round(), size=(112, 96), mode="bilinear", align_corners=False
        ).round(),
        out,
    )
