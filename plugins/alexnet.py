"""AlexNet (torchvision's) as a face embedding: ImageNet weights or face checkpoints with any classifier.

The aligned 96×112 face crop is resized to AlexNet's 224×224 inside the network, so DF keeps the same
meaning as for SphereFace. The embedding is a named layer's output (default fc7, 4096-d), never the
classifier's logits, which the seed project used by mistake.
"""

from lrbench import BackboneSpec, InputSpec, SPHEREFACE_96x112, hookimpl

LAYERS = {"pool5": 256 * 6 * 6, "fc6": 4096, "fc7": 4096}
IMAGENET_MEAN = tuple(255 * m for m in (0.485, 0.456, 0.406))
IMAGENET_STD = tuple(255 * s for s in (0.229, 0.224, 0.225))


def build(weights, layer: str = "fc7"):
    from .networks.alexnet import alexnet

    return alexnet(weights, layer)


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
