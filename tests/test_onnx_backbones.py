"""The ``onnx`` and ``torchscript`` backbones: lrbench's own networks exported both ways give the PyTorch
backbone's features and accuracies, under the input convention their options name."""

import json
import subprocess
import sys
import warnings

import pandas as pd
import pytest
import torch
from cli_helpers import invoke
from lrbench_plugins import dlib_resnet, onnx_models
from lrbench_plugins.networks.dlib_resnet import untrained_network
from torch import nn

from lrbench import DataError, UsageError, registry
from lrbench.eval.models import build_backbone
from lrbench.fileio import sha256_file

TINY_SPHEREFACE = {"depth": 4, "width": 0.25}
TOLERANCE = 1e-4  # max abs difference of features, PyTorch vs onnxruntime / TorchScript (seen: about 1e-7)


def export_onnx(model: nn.Module, path, size: tuple[int, int], batch: int | None = None):
    """``torch.onnx.export`` (the TorchScript-based exporter) with a dynamic batch, or a fixed one."""
    width, height = size
    dynamic = None if batch else {"data": {0: "batch"}, "embedding": {0: "batch"}}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model.eval(), torch.zeros(batch or 2, 3, height, width), str(path), input_names=["data"],
            output_names=["embedding"], dynamic_axes=dynamic, dynamo=False,
        )
    return path


def export_torchscript(model: nn.Module, path, size: tuple[int, int]):
    width, height = size
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.jit.trace(model.eval(), torch.zeros(2, 3, height, width)).save(str(path))
    return path


def build(name: str, weights, **options) -> nn.Module:
    return build_backbone(registry.backbone(name), str(weights), options)


@pytest.fixture(scope="module")
def sphereface(tmp_path_factory):
    """A seeded untrained SphereFace-4, saved as a checkpoint, an ONNX file and a TorchScript file."""
    folder = tmp_path_factory.mktemp("sphereface")
    model = build_backbone(registry.backbone("sphereface"), "random", TINY_SPHEREFACE)
    torch.save(model.state_dict(), folder / "sphereface.pt")
    size = registry.backbone("sphereface").input.template.size
    return {
        "model": model,
        "checkpoint": folder / "sphereface.pt",
        "onnx": export_onnx(model, folder / "sphereface.onnx", size),
        "torchscript": export_torchscript(model, folder / "sphereface-script.pt", size),
    }


@pytest.fixture(scope="module")
def dlib(tmp_path_factory):
    """dlib's ResNet-29, untrained and seeded (PyTorch checkpoint), exported both ways."""
    folder = tmp_path_factory.mktemp("dlib")
    torch.manual_seed(0)
    model = untrained_network()
    torch.save(model.state_dict(), folder / "dlib.pt")
    size = dlib_resnet.DLIB_150.size
    return {
        "model": model,
        "checkpoint": folder / "dlib.pt",
        "onnx": export_onnx(model, folder / "dlib.onnx", size),
        "torchscript": export_torchscript(model, folder / "dlib-script.pt", size),
    }


def crops(spec, count: int = 5) -> torch.Tensor:
    width, height = spec.input.template.size
    return spec.input.normalise(torch.rand(count, 3, height, width, generator=torch.Generator().manual_seed(1)) * 255)


@pytest.mark.parametrize("kind", ["onnx", "torchscript"])
@pytest.mark.parametrize("network, preset", [("sphereface", "sphereface"), ("dlib", "dlib-resnet")])
def test_exported_networks_give_the_pytorch_features(kind, network, preset, request):
    exported = request.getfixturevalue(network)
    spec = registry.backbone(kind).with_options({"preset": preset})
    batch = crops(spec)
    with torch.inference_mode():
        expected = exported["model"](batch)
        got = build(kind, exported[kind], preset=preset)(batch)
    assert got.shape == expected.shape
    assert (got - expected).abs().max() < TOLERANCE


def test_a_preset_names_a_published_convention_or_a_registered_backbones():
    onnx = registry.backbone("onnx")
    insightface = onnx.with_options({"preset": "insightface"})
    assert insightface.input.describe()["template"] == "arcface-112x112"
    assert (insightface.input.channel_order, insightface.input.mean, insightface.input.std) == (
        "RGB", (127.5,) * 3, (127.5,) * 3)
    assert onnx.with_options({"preset": "adaface"}).input.channel_order == "BGR"
    facenet = onnx.with_options({"preset": "facenet"}).input
    assert (facenet.template.size, facenet.channel_order, facenet.std) == ((160, 160), "RGB", (128.0,) * 3)
    dlib = onnx.with_options({"preset": "dlib-resnet"})
    assert (dlib.input, dlib.metric, dlib.flip_fusion) == (registry.backbone("dlib-resnet").input, "euclidean", "sum")


def test_with_options_fills_in_what_specialise_returns_and_leaves_other_specs_alone():
    sphereface = registry.backbone("sphereface")
    assert sphereface.with_options({"depth": 4}) is sphereface
    onnx = registry.backbone("onnx")
    specialised = onnx.with_options({"preset": "sphereface"})
    assert specialised.input == sphereface.input and specialised.specialise is None
    assert (specialised.name, specialised.options, specialised.build) == (onnx.name, onnx.options, onnx.build)


def test_single_options_override_the_preset():
    spec = registry.backbone("torchscript").with_options(
        {"preset": "insightface", "channel_order": "bgr", "std": "128", "mean": "1,2,3", "metric": "euclidean"}
    )
    assert (spec.input.channel_order, spec.input.mean, spec.input.std) == ("BGR", (1.0, 2.0, 3.0), (128.0,) * 3)
    assert spec.input.template.name == "arcface-112x112" and spec.metric == "euclidean"


@pytest.mark.parametrize(
    "options, message",
    [
        ({"preset": "arcface"}, "--option preset=arcface: no such convention; presets: insightface, adaface, "
                                "sphereface, facenet, insightface-mxnet, facex-zoo, magface, imagenet, or a "
                                "registered backbone's: "),
        ({}, "--option preset: the input convention is needed"),
        ({"template": "arcface-112x112", "mean": "127.5"}, "(missing: channel_order, std)"),
        ({"preset": "insightface", "mean": "1,2"}, "--option mean=1,2: expected one number or three"),
        ({"preset": "insightface", "std": "0"}, "--option std=0: expected one positive number"),
        ({"preset": "insightface", "template": "square"}, "--option template=square: no such template; choose one"),
        ({"preset": "insightface", "channel_order": "RGBA"}, "--option channel_order=RGBA: choose RGB or BGR"),
    ],
)
def test_a_convention_that_is_unknown_or_incomplete_is_refused(options, message):
    with pytest.raises(UsageError) as error:
        registry.backbone("onnx").with_options(options)
    assert message in str(error.value) and "\n" not in str(error.value)


@pytest.mark.parametrize("batch", [1, 3])
def test_a_graph_with_a_fixed_batch_takes_any_number_of_faces(sphereface, tmp_path, batch):
    size = registry.backbone("sphereface").input.template.size
    path = export_onnx(sphereface["model"], tmp_path / "fixed.onnx", size, batch=batch)
    network = build("onnx", path, preset="sphereface")
    assert network.provenance["input_shape"] == f"{batch}×3×112×96"
    images = crops(registry.backbone("sphereface"), 5)
    with torch.inference_mode():
        assert (network(images) - sphereface["model"](images)).abs().max() < TOLERANCE


def test_a_graph_whose_crop_size_is_not_the_conventions_is_refused(sphereface):
    with pytest.raises(UsageError, match=r"the graph takes 96×112 crops .* but the convention \(insightface\) crops "
                                         r"112×112; presets of its size: sphereface"):
        build("onnx", sphereface["onnx"], preset="insightface")


def test_a_graph_of_any_crop_size_that_fails_on_the_conventions_is_one_data_error(sphereface, tmp_path):
    path = tmp_path / "any-size.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(sphereface["model"], torch.zeros(2, 3, 112, 96), str(path), input_names=["data"],
                          dynamic_axes={"data": {0: "n", 2: "h", 3: "w"}}, dynamo=False)
    with pytest.raises(DataError, match=r"any-size\.onnx: onnxruntime fails on a 2×3×112×112 batch \(.+\)$"):
        build("onnx", path, preset="insightface")  # SphereFace's fully connected layer wants 96×112


class Channels(nn.Module):
    def forward(self, x):
        return x.mean(dim=(2, 3))  # N×3: an "embedding" whatever the input layout


def test_a_graph_whose_input_is_not_nchw_is_refused_with_its_shape(tmp_path):
    path = tmp_path / "nhwc.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(Channels(), torch.zeros(1, 112, 112, 3), str(path), input_names=["img"], dynamo=False)
    with pytest.raises(DataError, match=r"nhwc\.onnx: the graph's input 'img' is 1×112×112×3, not N×3×H×W$"):
        build("onnx", path, preset="insightface")


class Map(nn.Module):
    def forward(self, x):
        return x[:, :1]  # N×1×H×W


def test_a_graph_whose_output_is_not_n_by_d_is_refused(tmp_path):
    path = export_onnx(Map(), tmp_path / "map.onnx", (112, 112))
    with pytest.raises(DataError, match=r"map\.onnx: the graph's output 'embedding' is batch×1×112×112, not N×D$"):
        build("onnx", path, preset="insightface")
    script = export_torchscript(Map(), tmp_path / "map.pt", (112, 112))
    with pytest.raises(DataError, match=r"map\.pt: the model's output is \[2, 1, 112, 112\], not N×D$"):
        build("torchscript", script, preset="insightface")


def test_a_file_that_is_not_a_model_is_one_data_error_naming_it(tmp_path, sphereface):
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(bytes(range(256)) * 4)
    with pytest.raises(DataError, match=r"junk\.onnx: not a usable ONNX model \(") as error:
        build("onnx", junk, preset="insightface")
    assert "\n" not in str(error.value)
    with pytest.raises(DataError, match=r"sphereface\.pt: not a TorchScript model \(.*\); a state dict needs its own"):
        build("torchscript", sphereface["checkpoint"], preset="sphereface")
    with pytest.raises(DataError, match=r"junk\.onnx: not a TorchScript model \(torch.jit.save writes a zip archive\)"):
        build("torchscript", junk, preset="insightface")


def test_without_onnxruntime_the_onnx_backbone_says_how_to_install_it(sphereface, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import onnxruntime now raises ImportError
    with pytest.raises(UsageError, match=r"^backbone 'onnx' needs onnxruntime: pip install 'lrbench\[onnx\]'"):
        build("onnx", sphereface["onnx"], preset="sphereface")


def test_lrbench_and_its_listing_import_without_onnxruntime():
    code = (
        "import sys; sys.modules['onnxruntime'] = None\n"
        "from click.testing import CliRunner; from lrbench.cli import cli\n"
        "result = CliRunner().invoke(cli, ['list', 'backbones', '--json'])\n"
        "assert result.exit_code == 0, result.output\n"
        "print(result.stdout)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    [listed] = json.loads(done.stdout).values()  # the one kind asked for
    assert {"onnx", "torchscript"} <= set(listed) and listed["onnx"]["weights"] == "required"


def run(data, out, backbone, weights, *extra, pairs=None, landmarks=None):
    args = ["run", "-b", backbone, "-w", weights, "--data", data, "--out", out, "--workers", 1, "--batch-size", 16,
            "--df", "1,4", "--device", "cpu", *extra]
    args += ["--pairs", pairs, "--landmarks", landmarks] if pairs else []
    result = invoke(*args)
    assert result.exit_code == 0, result.output
    return pd.read_csv(out / "results.csv"), pd.read_csv(out / "scores.csv"), json.loads(
        (out / "manifest.json").read_text())


def assert_same_runs(runs: dict) -> None:
    (first_results, first_scores, _), *others = runs.values()
    for results, scores, _ in others:
        pd.testing.assert_series_equal(results["accuracy_mean"], first_results["accuracy_mean"])
        assert (scores["score"] - first_scores["score"]).abs().max() < 1e-4


def test_a_run_gives_identical_accuracies_through_pytorch_onnx_and_torchscript(sphereface, synth_data, tmp_path):
    data = synth_data.lfw_root
    options = [item for name, value in TINY_SPHEREFACE.items() for item in ("--option", f"{name}={value}")]
    runs = {"pytorch": run(data, tmp_path / "pytorch", "sphereface", sphereface["checkpoint"], *options)}
    for kind in ("onnx", "torchscript"):
        runs[kind] = run(data, tmp_path / kind, kind, sphereface[kind], "--option", "preset=sphereface")
    assert_same_runs(runs)
    manifest = runs["onnx"][2]
    assert manifest["input"] == runs["pytorch"][2]["input"]
    assert manifest["weights"] == {"value": sphereface["onnx"].name, "file": sphereface["onnx"].name,
                                   "sha256": sha256_file(sphereface["onnx"])}
    assert manifest["components"]["backbone"]["provenance"] == {
        "format": "onnx",
        "input_name": "data",
        "input_shape": "batch×3×112×96",
        "output_name": "embedding",
        "output_shape": "batch×512",
        "convention": "sphereface",
        "graph_normalises_input": None,
        "onnxruntime": manifest["components"]["backbone"]["provenance"]["onnxruntime"],
        "providers": {"cpu": "CPUExecutionProvider"},
    }
    assert runs["torchscript"][2]["components"]["backbone"]["provenance"]["convention"] == "sphereface"


def test_a_run_without_onnxruntime_is_one_line_saying_how_to_install(sphereface, synth_data, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    result = invoke("run", "-b", "onnx", "-w", sphereface["onnx"], "--option", "preset=sphereface",
                    "--data", synth_data.lfw_root, "--out", tmp_path / "out", "--workers", 1)
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines() == [
        "Error: backbone 'onnx' needs onnxruntime: " + onnx_models.INSTALL
    ]


def test_an_unknown_preset_on_the_command_line_is_one_usage_error(sphereface, synth_data, tmp_path):
    result = invoke("run", "-b", "torchscript", "-w", sphereface["torchscript"], "--option", "preset=arcface",
                    "--data", synth_data.lfw_root, "--out", tmp_path / "out")
    assert result.exit_code == 2
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("Error: --option preset=arcface: no such convention; presets: insightface, adaface")


@pytest.mark.lfw
def test_real_dlib_weights_give_identical_accuracies_on_an_lfw_subset(shared_lfw, tmp_path):
    """dlib's trained ResNet on the first 4 same and 4 different pairs of LFW folds 1 and 2, all three ways."""
    weights = shared_lfw.parent / "models" / dlib_resnet.DAT_NAME
    if not weights.is_file():
        pytest.skip(f"{weights} not present")
    lines = (shared_lfw / "pairs.txt").read_text().splitlines()[1:]
    kept = [line for fold in range(2) for half in range(2) for line in lines[600 * fold + 300 * half:][:4]]
    pairs = tmp_path / "pairs.txt"
    pairs.write_text("\n".join(["2\t4", *kept]) + "\n")
    model = build("dlib-resnet", weights)
    exported = {"onnx": export_onnx(model, tmp_path / "dlib.onnx", dlib_resnet.DLIB_150.size),
                "torchscript": export_torchscript(model, tmp_path / "dlib.pt", dlib_resnet.DLIB_150.size)}
    where = {"pairs": pairs, "landmarks": shared_lfw / "landmarks.txt"}
    data = shared_lfw / "lfw-deepfunneled"
    runs = {"pytorch": run(data, tmp_path / "pytorch", "dlib-resnet", weights, **where)}
    for kind, path in exported.items():
        runs[kind] = run(data, tmp_path / kind, kind, path, "--option", "preset=dlib-resnet", **where)
    assert_same_runs(runs)
    assert runs["pytorch"][0]["accuracy_mean"].iloc[0] > 0.8  # trained weights: the faces really are told apart


def test_without_a_cuda_provider_a_cuda_batch_runs_on_the_cpu_provider(sphereface):
    import onnxruntime

    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        pytest.skip("this onnxruntime has CUDA")
    network = build("onnx", sphereface["onnx"], preset="sphereface")
    network._session("cuda")  # what a batch on a CUDA device asks for
    assert network.provenance["providers"] == {"cpu": "CPUExecutionProvider", "cuda": "CPUExecutionProvider"}


def test_auto_hands_a_graph_with_a_fixed_batch_of_one_many_faces_without_a_climb(sphereface, synth_data, tmp_path):
    size = registry.backbone("sphereface").input.template.size
    path = export_onnx(sphereface["model"], tmp_path / "batch1.onnx", size, batch=1)
    result = invoke("run", "-b", "onnx", "-w", path, "--option", "preset=sphereface", "--data", synth_data.lfw_root,
                    "--out", tmp_path / "run", "--workers", 1, "--df", "1", "--device", "cpu", "--batch-size", "auto",
                    "--cache-dir", tmp_path / "cache")
    assert result.exit_code == 0, result.output
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["batching"]["batch_size"] == 32 and manifest["batching"]["chosen"] == "fixed"
    assert manifest["settings"]["batch_size"] == 32 and manifest["batching"]["network_batch"] == 1
    assert not (tmp_path / "cache" / "batch_sizes.json").exists()  # nothing measured, nothing remembered


class Normalising(nn.Module):
    """A network whose graph normalises its input first, as insightface's MXNet conversions do (Sub, Mul), or
    with ImageNet's 0–1 mean and std (Sub, Div)."""

    def __init__(self, inner: nn.Module, imagenet: bool = False):
        super().__init__()
        self.inner, self.imagenet = inner, imagenet
        self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1))

    def forward(self, x):
        return self.inner((x - self.mean) / self.std if self.imagenet else (x - 127.5) * 0.0078125)


@pytest.fixture(scope="module")
def normalising(tmp_path_factory):
    """A tiny untrained network on the 112×112 ArcFace crop, exported plain and with a normalisation inside."""
    folder = tmp_path_factory.mktemp("normalising")
    torch.manual_seed(0)
    inner = nn.Sequential(nn.Conv2d(3, 4, 4, 4), nn.PReLU(4), nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(16, 8))
    return {
        "inner": inner.eval(),
        "mxnet": export_onnx(Normalising(inner), folder / "mxnet.onnx", (112, 112)),
        "imagenet": export_onnx(Normalising(inner, imagenet=True), folder / "imagenet.onnx", (112, 112)),
        "plain": export_onnx(inner, folder / "plain.onnx", (112, 112)),
    }


def test_a_graph_that_normalises_its_input_is_not_normalised_twice(normalising):
    path = normalising["mxnet"]
    with pytest.raises(UsageError) as caught:
        build("onnx", path, preset="insightface")
    assert str(caught.value) == (
        f"--weights {path.resolve()}: the graph normalises its input itself (Sub, Mul: (x − 127.5) / 128), so the "
        "convention (insightface: mean 127.5, std 127.5) would normalise it twice; add --option mean=0 --option "
        "std=1 to give it the 0…255 pixels it expects"
    )


@pytest.mark.parametrize("options", [{"preset": "insightface", "mean": "0", "std": "1"},
                                     {"preset": "insightface-mxnet"}])
def test_a_graph_that_normalises_its_input_gets_plain_pixels_and_says_so(normalising, options):
    network = build("onnx", normalising["mxnet"], **options)
    pixels = torch.rand(3, 3, 112, 112, generator=torch.Generator().manual_seed(2)) * 255
    spec = registry.backbone("onnx").with_options(options).input
    with torch.inference_mode():
        expected = normalising["inner"]((pixels - 127.5) / 128)  # the graph's own normalisation, once
        assert (network(spec.normalise(pixels)) - expected).abs().max() < TOLERANCE
    assert network.provenance["graph_normalises_input"] == "Sub, Mul: (x − 127.5) / 128"


def test_a_graph_normalising_0_to_1_input_asks_for_0_to_1_values(normalising):
    path = normalising["imagenet"]
    with pytest.raises(UsageError, match=r"\(Sub, Div: \(x − 0\.485,0\.456,0\.406\) / 0\.229,0\.224,0\.225\), so .* "
                                         r"add --option mean=0 --option std=255 to give it the 0…1 values it expects"):
        build("onnx", path, preset="insightface", mean="0", std="1")
    network = build("onnx", path, preset="insightface", mean="0", std="255")
    assert network.provenance["graph_normalises_input"].startswith("Sub, Div: ")


def test_plain_pixels_for_a_graph_that_does_not_normalise_them_are_a_warning(normalising, capsys):
    network = build("onnx", normalising["plain"], preset="insightface-mxnet")
    assert network.provenance["graph_normalises_input"] is None
    warning = capsys.readouterr().err
    assert "feeds the graph unnormalised 0…255 pixels, but its first node (Conv) does not normalise them" in warning
    build("onnx", normalising["plain"], preset="insightface")
    assert "unnormalised" not in capsys.readouterr().err


def test_a_graph_that_normalises_its_input_is_refused_on_the_command_line_in_one_line(normalising, synth_data,
                                                                                       tmp_path):
    result = invoke("run", "-b", "onnx", "-w", normalising["mxnet"], "--option", "preset=insightface",
                    "--data", synth_data.lfw_root, "--out", tmp_path / "out", "--workers", 1)
    assert result.exit_code == 2
    [line] = result.stderr.strip().splitlines()
    assert "the graph normalises its input itself" in line and not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "options, advice",
    [
        ({"preset": "insightface", "mean": "0.485,0.456,0.406", "std": "0.229,0.224,0.225"},
         "--option mean=0.485,0.456,0.406 --option std=0.229,0.224,0.225: 0–1 units (as PyTorch code writes "
         "ImageNet's 0.485 and 0.229), but lrbench's mean and std apply to 0…255 pixels: give "
         "mean=123.675,116.28,103.53 std=58.395,57.12,57.375 (each × 255), as preset=imagenet does"),
        ({"preset": "adaface", "mean": "0.5", "std": "0.5"},
         "--option mean=0.5 --option std=0.5: 0–1 units (as PyTorch code writes ImageNet's 0.485 and 0.229), but "
         "lrbench's mean and std apply to 0…255 pixels: give mean=127.5 std=127.5 (each × 255), as preset=adaface "
         "does"),
        ({"template": "arcface-112x112", "channel_order": "RGB", "mean": "0", "std": "0.5"},
         "--option mean=0 --option std=0.5: 0–1 units (as PyTorch code writes ImageNet's 0.485 and 0.229), but "
         "lrbench's mean and std apply to 0…255 pixels: give mean=0 std=127.5 (each × 255)"),
    ],
)
def test_mean_and_std_in_0_to_1_units_are_refused_with_the_pixel_values(options, advice):
    with pytest.raises(UsageError) as caught:
        registry.backbone("torchscript").with_options(options)
    assert str(caught.value) == advice


def test_mean_0_and_std_1_are_plain_pixels_not_0_to_1_units():
    """(MagFace's code writes its x / 255 as ToTensor with mean 0, std 1: in lrbench's units that is std=255.)"""
    spec = registry.backbone("onnx").with_options({"preset": "insightface", "mean": "0", "std": "1"})
    assert (spec.input.mean, spec.input.std) == ((0.0,) * 3, (1.0,) * 3)


def test_the_listing_shows_every_presets_convention():
    result = invoke("list", "backbones", "--json")
    assert result.exit_code == 0, result.output
    description = json.loads(result.stdout)["backbones"]["onnx"]["description"]
    assert "imagenet: arcface-112x112 RGB (x − 123.675,116.28,103.53) / 58.395,57.12,57.375" in description
    assert "insightface-mxnet: arcface-112x112 RGB (x − 0) / 1" in description
    assert "magface: arcface-112x112 BGR (x − 0) / 255" in description
    assert all(f"{name}: " in description for name in onnx_models.PRESETS)
