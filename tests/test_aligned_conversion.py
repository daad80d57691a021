"""Pre-aligned crops (a .bin, --aligned folders) are converted to the backbone's template by a similarity
between the two templates, never squeezed, and the manifest and results say what the face measures."""

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from lrbench import BackboneSpec, CropTemplate, InputSpec, hookimpl
from lrbench.cli import cli
from lrbench.data.align import TemplateConversion
from lrbench.data.crops import load_crops
from lrbench.data.landmarks import landmarks_for
from lrbench.errors import DataError, UsageError
from lrbench.eval.engine import EvalSettings, evaluate
from lrbench.specs import ARCFACE_112x112

COMMON = {"backbone": "lbp", "dfs": "1,4", "workers": 1, "show_progress": "off", "cache_dir": None}
WIDE = CropTemplate("wide-test-150x150", (150, 150),
                    ((47.9, 46.0), (102.4, 46.1), (74.7, 78.2), (50.8, 105.6), (98.8, 105.7)))


class Cells(torch.nn.Module):
    """The mean colour of a 4×4 grid of cells: enough to tell a conversion from a squeeze."""

    def forward(self, x):
        return torch.nn.functional.adaptive_avg_pool2d(x, 4).flatten(1)


class WidePlugin:
    @hookimpl
    def register_backbones(self, register):
        register(BackboneSpec("wide-cells", lambda weights: Cells(), InputSpec(WIDE), 48))


@pytest.fixture(scope="module")
def arcface_bin(synth_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("bin") / "synth.bin"
    result = CliRunner().invoke(cli, ["bin", "make", "--data", str(synth_data.lfw_root), "--out", str(out), "-q",
                                      "--workers", "1"])
    assert result.exit_code == 0, result.output
    return out


@pytest.fixture(scope="module")
def arcface_folder(synth_data, tmp_path_factory):
    """synth's LFW images aligned once to the ArcFace template and written back under their own names."""
    root = synth_data.lfw_images
    images = sorted(str(path.relative_to(root)) for path in root.rglob("*.jpg"))
    crops, _ = load_crops(root, images, ARCFACE_112x112, landmarks_for(images, synth_data.lfw_landmarks, root),
                          workers=1, cache_dir=None, show_progress=False)
    folder = tmp_path_factory.mktemp("aligned") / "images"
    for rel, crop in zip(images, crops):
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(crop).save(folder / rel, quality=98)
    return folder


@pytest.fixture(scope="module")
def direct(synth_data):
    """The run aligned from landmarks straight to the backbone's template."""
    return evaluate(EvalSettings(data=synth_data.lfw_root, **COMMON))


def test_arcface_crops_of_a_bin_score_as_the_direct_sphereface_alignment(arcface_bin, direct, tmp_path):
    from_bin = evaluate(EvalSettings(data=tmp_path, protocol=str(arcface_bin), **COMMON))
    # the two templates differ by a shift of 8 px: the converted crops are the direct ones up to rounding
    assert np.corrcoef(direct.scores["score"], from_bin.scores["score"])[0, 1] > 0.999
    converted = from_bin.manifest["input"]["aligned_crops"]
    assert converted["source_template"] == "arcface-112x112" and converted["target_template"] == "sphereface-96x112"
    assert converted["decided"] == "given"


def test_an_aligned_folder_s_framing_is_inferred_from_its_size(arcface_folder, synth_data, direct):
    run = evaluate(EvalSettings(data=arcface_folder, pairs=synth_data.pairs, aligned=True, **COMMON))
    converted = run.manifest["input"]["aligned_crops"]
    assert converted["source_template"] == "arcface-112x112" and "112×112" in converted["decided"]
    assert np.corrcoef(direct.scores["score"], run.scores["score"])[0, 1] > 0.99


def test_the_interocular_distance_reported_is_that_of_the_converted_crops(plugin_manager, arcface_folder, synth_data):
    plugin_manager.register_for_test(WidePlugin(), name="wide-plugin")
    run = evaluate(EvalSettings(data=arcface_folder, pairs=synth_data.pairs, aligned=True,
                                **{**COMMON, "backbone": "wide-cells", "dfs": "1,5"}))
    conversion = TemplateConversion(ARCFACE_112x112, WIDE)
    assert conversion.interocular == pytest.approx(35.24 * conversion.scale, abs=0.01)
    assert run.manifest["input"]["interocular_px"] == round(conversion.interocular, 2)
    assert run.results["interocular_px"].tolist() == [round(conversion.interocular, 2),
                                                      round(conversion.interocular * 30 / 150, 2)]
    assert conversion.interocular != pytest.approx(WIDE.interocular, abs=1), "the fitted eyes, not the template's"


def test_a_named_template_of_another_shape_is_refused_naming_the_image(arcface_folder, synth_data):
    with pytest.raises(DataError, match=r"\.jpg: the image is 112×112 px, not the shape of a sphereface-96x112"):
        evaluate(EvalSettings(data=arcface_folder, pairs=synth_data.pairs, aligned=True,
                              aligned_template="sphereface-96x112", **COMMON))


def test_an_unknown_template_name_is_a_usage_error_listing_the_known_ones(arcface_folder, synth_data):
    with pytest.raises(UsageError, match=r"--aligned-template nope: unknown crop template; known: .*arcface-112x112"):
        evaluate(EvalSettings(data=arcface_folder, pairs=synth_data.pairs, aligned=True, aligned_template="nope",
                              **COMMON))
