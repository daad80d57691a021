import urllib.error

import pytest
import torch
import torchvision

from lrbench import registry
from lrbench.errors import UsageError
from lrbench.eval.models import build_backbone
from lrbench.options import parse_options


@pytest.fixture
def spec():
    return registry.backbone("alexnet")


def face_checkpoint(classes):
    net = torchvision.models.alexnet(weights=None, num_classes=classes)
    torch.manual_seed(1)
    with torch.no_grad():
        for p in net.parameters():
            p.normal_(0, 0.01)
    return net


def test_face_checkpoint_with_any_classifier_gives_fc7_not_logits(spec, tmp_path):
    net = face_checkpoint(10575)
    torch.save({"state_dict": {f"module.{k}": v for k, v in net.state_dict().items()}}, tmp_path / "face.pth")
    model = build_backbone(spec, str(tmp_path / "face.pth"))
    x = torch.randn(2, 3, 112, 96)
    with torch.no_grad():
        resized = torch.nn.functional.interpolate(x, size=(224, 224), mode="bilinear", align_corners=False)
        hidden = net.avgpool(net.features(resized)).flatten(1)
        fc7 = net.classifier[4](net.classifier[2](net.classifier[1](hidden)))
        torch.testing.assert_close(model(x), fc7)
        assert model(x).shape == (2, 4096)


@pytest.mark.parametrize(("layer", "dim"), [("pool5", 9216), ("fc6", 4096), ("fc7", 4096)])
def test_embedding_layer_is_selectable(spec, layer, dim):
    model = build_backbone(spec, "random", parse_options(spec, [f"layer={layer}"]))
    with torch.no_grad():
        assert model(torch.randn(1, 3, 112, 96)).shape == (1, dim)


def test_imagenet_weights_come_from_torchvision_cache(spec, tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    weights = torchvision.models.AlexNet_Weights.IMAGENET1K_V1
    cached = tmp_path / "hub" / "checkpoints" / weights.url.rsplit("/", 1)[1]
    cached.parent.mkdir(parents=True)
    net = face_checkpoint(1000)
    torch.save(net.state_dict(), cached)
    model = build_backbone(spec, "imagenet")
    torch.testing.assert_close(model.features[0].weight, net.features[0].weight)


def test_imagenet_weights_offline_say_where_to_put_the_file(spec, tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))

    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    with pytest.raises(UsageError, match=r"put https://download.pytorch.org/models/alexnet-.*\.pth at .*checkpoints"):
        build_backbone(spec, "imagenet")


def test_weights_are_required(spec):
    with pytest.raises(UsageError, match="needs --weights"):
        build_backbone(spec, None)
