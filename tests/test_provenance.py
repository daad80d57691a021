"""A run's manifest records what actually ran, and weights files are what they claim to be."""

import hashlib
import json
from pathlib import Path

import PIL
import pytest
import torch
import torchvision
from cli_helpers import invoke
from lrbench_plugins import dlib_resnet
from lrbench_plugins.networks.dlib_resnet import untrained_network

import lrbench
from lrbench import BackboneSpec, DegradationSpec, InputSpec, SPHEREFACE_96x112, hookimpl, load_weights, registry
from lrbench.errors import DataError, LrbenchError
from lrbench.eval.models import build_backbone, weights_file

SHARED_DAT = Path(__file__).resolve().parents[2] / "shared" / "data" / "models" / dlib_resnet.DAT_NAME


class CellMeans(torch.nn.Module):
    """Mean colour of a grid of cells: ``cells``² × 3 values, a backbone that needs no training."""

    def __init__(self, cells: int = 4):
        super().__init__()
        self.cells = cells
        self.scale = torch.nn.Parameter(torch.ones(1))

    def forward(self, x):
        return torch.nn.functional.adaptive_avg_pool2d(x * self.scale, self.cells).flatten(1)


def spec(name, build, dim=48, **fields):
    return BackboneSpec(name, build, InputSpec(SPHEREFACE_96x112), dim, **fields)


class Plugin:
    """A test plugin registering the backbones and degradations it is given."""

    def __init__(self, backbones=(), degradations=()):
        self.backbones, self.degradations = backbones, degradations

    @hookimpl
    def register_backbones(self, register):
        for make in self.backbones:
            register(make())

    @hookimpl
    def register_degradations(self, register):
        for make in self.degradations:
            register(make())


def run(data, out, *extra):
    result = invoke("run", "--data", data, "--out", out, "--workers", 1, "--df", "2", *extra)
    assert result.exit_code == 0, result.output
    return json.loads((out / "manifest.json").read_text())


def sha256(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# --- options: one source of truth ---------------------------------------------------------------------


def test_a_declared_default_that_differs_from_builds_is_refused_naming_the_plugin(plugin_manager):
    def build(weights, cells: int = 2):
        return CellMeans(cells)

    plugin_manager.register_for_test(Plugin([lambda: spec("cells", build, options={"cells": 4})]), name="disagrees")
    with pytest.raises(LrbenchError, match=r"plugin 'disagrees' failed in register_backbones: backbone 'cells': "
                                           r"option 'cells' is declared with default 4 but build\(\) defaults it to 2"):
        registry.collect("backbone")


def test_a_declared_default_of_another_type_is_refused():
    with pytest.raises(ValueError, match="declared with default 4.0 but build"):
        spec("cells", lambda weights, cells=4: CellMeans(cells), options={"cells": 4.0})


def test_a_declared_option_the_function_does_not_take_is_refused():
    with pytest.raises(ValueError, match=r"option 'sharpness' is not a keyword argument of apply\(\)"):
        DegradationSpec("blurry", lambda batch, df: batch, options={"sharpness": 1.0})


def test_a_degradation_default_that_differs_from_applys_is_refused():
    with pytest.raises(ValueError, match=r"degradation 'dim': option 'gain' is declared with default 0.5"):
        DegradationSpec("dim", lambda batch, df, gain=0.7: batch * gain, options={"gain": 0.5})


def test_every_declared_option_is_passed_and_recorded(plugin_manager, synth_data, tmp_path):
    """build() and apply() without defaults of their own get the declared ones; the manifest says which."""

    def darken(batch, df, gain):
        return batch * gain

    plugin = Plugin([lambda: spec("cells", lambda weights, cells: CellMeans(cells), dim=lambda cells: 3 * cells**2,
                                  options={"cells": 4})],
                    [lambda: DegradationSpec("dark", darken, options={"gain": 0.5})])
    plugin_manager.register_for_test(plugin, name="no-defaults")
    manifest = run(synth_data.lfw_root, tmp_path / "run", "-b", "cells", "--degradation", "dark",
                   "--option", "cells=2")
    components = manifest["components"]
    assert components["backbone"]["options"] == {"cells": 2}
    assert components["degradation"]["options"] == {"gain": 0.5}
    assert manifest["degradation"]["settings"] == {"gain": 0.5}


# --- components: plugin, distribution, version ------------------------------------------------------


def test_built_in_components_name_their_plugin_and_lrbench_version(synth_data, tmp_path):
    manifest = run(synth_data.lfw_root, tmp_path / "run", "-b", "sphereface", "--weights", "random",
                   "--option", "depth=4", "--option", "width=0.25")
    built_in = {"distribution": "lrbench", "version": lrbench.__version__}
    assert manifest["components"] == {
        "backbone": {"name": "sphereface", "plugin": "lrbench_plugins.sphereface", **built_in,
                     "options": {"depth": 4, "width": 0.25}},
        "degradation": {"name": "bicubic", "plugin": "lrbench_plugins.resize", **built_in, "options": {}},
        "protocol": {"name": "lfw-view2", "plugin": "lrbench_plugins.pairs_protocols", **built_in},
    }
    assert manifest["versions"]["pillow"] == PIL.__version__


def test_a_protocol_file_is_recorded_with_its_checksum(synth_data, tmp_path):
    definition = tmp_path / "mine.toml"
    definition.write_text('name = "mine"\ndescription = "mine"\nimage_dirs = ["images"]\n')
    manifest = run(synth_data.lfw_root, tmp_path / "run", "-b", "lbp", "--protocol", definition)
    # outside the data folder: named by its file name (a shared run leaks no path of this machine)
    assert manifest["components"]["protocol"] == {"name": "mine", "file": definition.name,
                                                  "sha256": sha256(definition)}


def test_a_plugin_without_a_distribution_has_no_version(plugin_manager, synth_data, tmp_path):
    plugin_manager.register_for_test(Plugin([lambda: spec("cells", lambda weights: CellMeans())]), name="loose")
    manifest = run(synth_data.lfw_root, tmp_path / "run", "-b", "cells")
    assert manifest["components"]["backbone"] == {"name": "cells", "plugin": "loose", "distribution": None,
                                                  "version": None, "options": {}}


# --- weights: the file that was loaded, also from a default location ---------------------------------


def test_weights_from_a_default_location_are_recorded_with_their_checksum(plugin_manager, synth_data, tmp_path):
    default = tmp_path / "packaged" / "cells.pt"
    default.parent.mkdir()
    torch.save(CellMeans().state_dict(), default)

    def build(weights):
        model = CellMeans()
        load_weights(model, weights or default)  # no --weights: the plugin's own default file
        return model

    plugin_manager.register_for_test(Plugin([lambda: spec("cells", build)]), name="packaged")
    manifest = run(synth_data.lfw_root, tmp_path / "run", "-b", "cells")
    assert manifest["weights"] == {"value": None, "file": default.name, "sha256": sha256(default)}


def test_weights_given_by_path_are_recorded_with_their_checksum(synth_data, tmp_path):
    checkpoint = tmp_path / "sphere.pt"
    torch.save(registry.backbone("sphereface").build("random", depth=4, width=0.25).state_dict(), checkpoint)
    manifest = run(synth_data.lfw_root, tmp_path / "run", "-b", "sphereface", "--weights", checkpoint,
                   "--option", "depth=4", "--option", "width=0.25")
    assert manifest["weights"] == {"value": checkpoint.name, "file": checkpoint.name,
                                   "sha256": sha256(checkpoint)}


def test_untrained_weights_have_no_file(synth_data, tmp_path):
    manifest = run(synth_data.lfw_root, tmp_path / "run", "-b", "sphereface", "--weights", "random",
                   "--option", "depth=4", "--option", "width=0.25")
    assert manifest["weights"] == {"value": "random", "file": None, "sha256": None}


def test_dlib_resnet_reports_its_packaged_weights_file(tmp_path, monkeypatch):
    packaged = tmp_path / "face_recognition_models" / "models" / "student.pt"
    packaged.parent.mkdir(parents=True)
    torch.save(untrained_network().state_dict(), packaged)
    monkeypatch.setattr(dlib_resnet, "packaged_weights", lambda: packaged)
    assert weights_file(build_backbone(registry.backbone("dlib-resnet"), None), None) == packaged.resolve()


def test_dlib_resnet_reports_the_dat_file_it_read():
    dat = SHARED_DAT if SHARED_DAT.is_file() else dlib_resnet.packaged_weights()
    if dat is None:
        pytest.skip(f"{dlib_resnet.DAT_NAME} not found (the shared copy or face-recognition-models)")
    assert weights_file(build_backbone(registry.backbone("dlib-resnet"), str(dat)), str(dat)) == dat.resolve()


def test_alexnet_imagenet_reports_torchvisions_cached_file(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    url = torchvision.models.AlexNet_Weights.IMAGENET1K_V1.url
    cached = tmp_path / "hub" / "checkpoints" / url.rsplit("/", 1)[1]
    cached.parent.mkdir(parents=True)
    torch.save(torchvision.models.alexnet(weights=None).state_dict(), cached)
    model = build_backbone(registry.backbone("alexnet"), "imagenet")
    assert weights_file(model, "imagenet") == cached.resolve()


# --- the declared embedding length is the real one ---------------------------------------------------


def test_an_embedding_dim_that_the_network_does_not_produce_is_refused(plugin_manager):
    plugin_manager.register_for_test(Plugin([lambda: spec("cells", lambda weights: CellMeans(), dim=128)]),
                                     name="miscounts")
    with pytest.raises(LrbenchError, match=r"backbone 'cells' \(plugin 'miscounts'\) declares 128-d embeddings but "
                                           r"its network maps a batch of 2 crops to shape \[2, 48\]"):
        build_backbone(registry.backbone("cells"), None)


def test_the_refusal_is_one_line_before_any_image_is_read(plugin_manager, synth_data, tmp_path):
    plugin_manager.register_for_test(Plugin([lambda: spec("cells", lambda weights: CellMeans(), dim=128)]),
                                     name="miscounts")
    result = invoke("run", "-b", "cells", "--data", synth_data.lfw_root, "--out", tmp_path / "run",
                    "--cache-dir", tmp_path / "cache")
    assert result.exit_code == 1 and result.stderr.count("\n") == 1, result.output
    assert "declares 128-d embeddings" in result.stderr and not (tmp_path / "cache").exists()


@pytest.mark.parametrize(("layer", "dim"), [("pool5", 9216), ("fc7", 4096)])
def test_an_embedding_dim_may_depend_on_the_options(layer, dim):
    alexnet = registry.backbone("alexnet")
    assert alexnet.embedding_size({"layer": layer}) == dim
    build_backbone(alexnet, "random", {"layer": layer})  # checked against the real output: no error


# --- weights files that are not weights --------------------------------------------------------------


@pytest.fixture
def text_file(tmp_path):
    path = tmp_path / "weights.txt"
    path.write_text("epoch 10: loss 0.31\nepoch 11: loss 0.29\n")
    return path


@pytest.mark.parametrize("name", ["sphereface", "alexnet", "dlib-resnet"])
def test_a_text_file_as_weights_is_a_data_error_naming_it(name, text_file):
    with pytest.raises(DataError) as caught:
        build_backbone(registry.backbone(name), str(text_file))
    message = str(caught.value)
    assert message.startswith(f"{text_file}: a text file (starting 'epoch 10: loss 0.31'), not ")
    assert "\n" not in message


def test_a_text_file_as_weights_is_one_line_on_the_command_line(synth_data, text_file, tmp_path):
    result = invoke("run", "-b", "sphereface", "--weights", text_file, "--data", synth_data.lfw_root,
                    "--out", tmp_path / "run")
    assert result.exit_code == 1 and result.stderr.splitlines() == [
        f"Error: {text_file}: a text file (starting 'epoch 10: loss 0.31'), not a PyTorch checkpoint"
    ]


def test_an_empty_file_as_weights_is_a_data_error_naming_it(tmp_path):
    empty = tmp_path / "empty.pt"
    empty.touch()
    with pytest.raises(DataError, match=rf"^{empty}: empty file, not a PyTorch checkpoint$"):
        build_backbone(registry.backbone("sphereface"), str(empty))


def test_a_dlib_dat_file_given_to_sphereface_is_not_a_checkpoint(tmp_path):
    dat = tmp_path / dlib_resnet.DAT_NAME
    dat.write_bytes(b"\x01\x01\x8dloss_metric_2" + bytes(64))  # how dlib's serialisation starts
    with pytest.raises(DataError, match=rf"^{dat}: not a PyTorch checkpoint \(torch.save writes a zip archive\)$"):
        build_backbone(registry.backbone("sphereface"), str(dat), {"depth": 4, "width": 0.25})


def test_a_checkpoint_of_another_network_given_to_dlib_resnet_names_backbone_and_file(tmp_path):
    checkpoint = tmp_path / "sphere.pt"
    torch.save(registry.backbone("sphereface").build("random", depth=4, width=0.25).state_dict(), checkpoint)
    expected = rf"^backbone 'dlib-resnet': {checkpoint}: checkpoint fits none of the layouts \(native\)"
    with pytest.raises(DataError, match=expected) as caught:
        build_backbone(registry.backbone("dlib-resnet"), str(checkpoint))
    assert "missing" in caught.value.details  # the mismatch table survives the renaming
