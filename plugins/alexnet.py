"""AlexNet (torchvision's) as a face embedding: ImageNet weights or face checkpoints with any classifier.

The aligned 96×112 face crop is resized to AlexNet's 224×224 inside the network, so DF keeps the same
meaning as for SphereFace. The embedding is a named layer's output (default fc7, 4096-d), never the
classifier's logits, which the seed project used by mistake.
"""

from pathlib import Path

import torch
import torchvision
from torch import nn

from lrbench import BackboneSpec, InputSpec, SPHEREFACE_96x112, hookimpl, load_weights

LAYERS = {"pool5": 256 * 6 * 6, "fc6": 4096, "fc7": 4096}
IMAGENET_MEAN = tuple(255 * m for m in (0.485, 0.456, 0.406))
IMAGENET_STD = tuple(255 * s for s in (0.229, 0.224, 0.225))


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


def build(weights, layer: str = "fc7"):
    model = AlexNetEmbedding(layer)
    if weights == "imagenet":
        state = imagenet_state_dict()
        model.load_state_dict({k: v for k, v in state.items() if not k.startswith("classifier.6.")})
        model.weights_file = imagenet_file()  # the cached download, for the manifest
    elif weights != "random":
        load_weights(model, weights, ignore=("classifier.6.",))
    return model


@hookimpl
def register_backbones(register):
    register(
        BackboneSpec(
            name="alexnet",
            build=build,
            input=InputSpec(SPHEREFACE_96x112, "RGB", mean=IMAGENET_MEAN, std=IMAGENET_STD),
            embedding_dim=lambda layer: LAYERS[layer],
            needs_weights=True,
            options={"layer": "fc7"},
            description="torchvision AlexNet on the 96×112 crop resized to 224×224; --weights imagenet, a face "
            "checkpoint (any classifier size) or random; option layer = pool5, fc6 or fc7",
        )
    )
