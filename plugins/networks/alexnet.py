"""AlexNet (torchvision's) as a face embedding network: the chosen layer's output, ImageNet weights from torchvision."""

from pathlib import Path

import torch
import torchvision
from torch import nn

from lrbench import load_weights

from ..alexnet import LAYERS


class AlexNetEmbedding(nn.Module):
    """torchvision's AlexNet without its last classifier layer; returns the chosen layer's output."""

    def __init__(self, layer: str = "fc7"):
        super().__init__()
        if layer not in LAYERS:
            raise ValueError(f"layer {layer!r} is not an AlexNet embedding layer; choose one of {', '.join(LAYERS)}")
        net = torchvision.models.alexnet(weights=None)
        self.layer = layer
        self.features, self.avgpool = net.features, net.avgpool
        self.classifier = net.classifier[:6]  # dropout, fc6, relu, dropout, fc7, relu; fc8 (logits) dropped

    def forward(self, x):
        x = nn.functional.interpolate(x, size=(224, 224), mode="bilinear", align_corners=False)
        x = self.avgpool(self.features(x)).flatten(1)
        if self.layer == "pool5":
            return x
        x = self.classifier[1](x)
        if self.layer == "fc6":
            return x
        return self.classifier[4](self.classifier[2](x))


IMAGENET = torchvision.models.AlexNet_Weights.IMAGENET1K_V1


def imagenet_file() -> Path:
    """Where torchvision's weights API keeps the ImageNet weights (its cache, under TORCH_HOME)."""
    return Path(torch.hub.get_dir()) / "checkpoints" / Path(IMAGENET.url).name


def imagenet_state_dict() -> dict:
    """ImageNet weights through torchvision's weights API (its cache first); offline, say where the file goes."""
    try:
        return IMAGENET.get_state_dict(progress=False)
    except OSError as exc:  # URLError and socket errors: no file in the cache and no way to fetch it
        raise ValueError(
            f"ImageNet AlexNet weights are not in torchvision's cache and cannot be downloaded ({exc}); "
            f"put {IMAGENET.url} at {imagenet_file()}"
        ) from None


def alexnet(weights, layer: str) -> AlexNetEmbedding:
    """The network with ImageNet weights (``"imagenet"``), a face checkpoint (any classifier) or none."""
    model = AlexNetEmbedding(layer)
    if weights == "imagenet":
        state = imagenet_state_dict()
        model.load_state_dict({k: v for k, v in state.items() if not k.startswith("classifier.6.")})
        model.weights_file = imagenet_file()  # the cached download, for the manifest
    elif weights != "random":
        load_weights(model, weights, ignore=("classifier.6.",))
    return model
