"""IResNet, the "improved residual" face networks: insightface's arcface_torch ``iresnet`` and AdaFace's IR.

Both run on the 112×112 ArcFace crop: a 3×3 stem (conv, BN, PReLU), four stages of pre-activation blocks
(BN → 3×3 conv → BN → PReLU → 3×3 conv with the stage's stride → BN, plus a shortcut), then BN → flatten →
fully connected → BN1d, a 512-d embedding. The first block of each stage halves the resolution (112 → 7).
The two families differ where it matters for their published checkpoints:

- insightface (Deng et al., CVPR 2019; ``recognition/arcface_torch/backbones/iresnet.py``): a 1×1 conv + BN
  shortcut in the first block of every stage; the last BN1d has a weight (fixed at 1); parameter names are
  this module's own (``layer1.0.conv1.weight``, ``fc.weight``, ``features.running_mean``); RGB input.
- AdaFace (Kim et al., CVPR 2022; ``net.py``): the first stage's shortcut only subsamples (a 1×1 max pool of
  stride 2, no parameters); the last BN1d has no affine parameters; names ``input_layer.*``,
  ``body.N.res_layer.*``, ``body.N.shortcut_layer.*``, ``output_layer.*``, in PyTorch Lightning ``.ckpt``
  files under ``state_dict`` with a ``model.`` prefix (and the margin head's ``head.kernel``); BGR input; the
  network returns the unit embedding and its norm, and AdaFace's evaluation adds a face's and its mirror
  image's un-normalised features, which this network's output (the feature before normalisation) and
  ``flip_fusion="sum"`` reproduce.
"""

from lrbench import ARCFACE_112x112, BackboneSpec, InputSpec, hookimpl

# Residual blocks per stage, as each family's code lays them out.
INSIGHTFACE_UNITS = {18: (2, 2, 2, 2), 34: (3, 4, 6, 3), 50: (3, 4, 14, 3), 100: (3, 13, 30, 3), 200: (6, 26, 60, 6)}
# AdaFace calls its 100-layer network IR-101 (``build_model("ir_101")`` builds ``Backbone(100)``): both names work.
ADAFACE_UNITS = {18: (2, 2, 2, 2), 34: (3, 4, 6, 3), 50: (3, 4, 14, 3), 100: (3, 13, 30, 3), 101: (3, 13, 30, 3)}
# AdaFace's names as its Lightning .ckpt holds them (``model.`` prefix) and bare (a re-saved state dict)
ADAFACE_LAYOUTS = ("adaface-lightning", "adaface")


def build_insightface(weights, depth: int = 50, width: float = 1.0, embedding: int = 512):
    from .networks.iresnet import insightface

    return insightface(weights, depth, width, embedding)


def build_adaface(weights, depth: int = 50, width: float = 1.0):
    from .networks.iresnet import adaface

    return adaface(weights, depth, width)


@hookimpl
def register_backbones(register):
    register(
        BackboneSpec(
            name="iresnet",
            build=build_insightface,
            input=InputSpec(ARCFACE_112x112, "RGB", mean=(127.5,) * 3, std=(127.5,) * 3),
            embedding_dim=lambda depth, width, embedding: embedding,
            flip_fusion="sum",  # insightface's verification adds the mirror image's embedding
            needs_weights=True,
            options={"depth": 50, "width": 1.0, "embedding": 512},
            checkpoint_layouts=("native (arcface_torch backbone.pth: plain, module., fp16)",),
            description="insightface arcface_torch IResNet (option depth="
            f"{'|'.join(map(str, INSIGHTFACE_UNITS))}, default 50; backbone.pth of r18…r200); 112×112 ArcFace "
            "crop, RGB, (x − 127.5)/127.5, 512-d",
        )
    )
    register(
        BackboneSpec(
            name="adaface-ir",
            build=build_adaface,
            input=InputSpec(ARCFACE_112x112, "BGR", mean=(127.5,) * 3, std=(127.5,) * 3),
            embedding_dim=512,
            flip_fusion="sum",  # AdaFace's evaluation adds the un-normalised features (pre_norm_vector_add)
            needs_weights=True,
            options={"depth": 50, "width": 1.0},
            checkpoint_layouts=("native", *ADAFACE_LAYOUTS),
            description="AdaFace IR (option depth=18|34|50|100, 101 = AdaFace's ir_101; default 50; the .ckpt "
            "files of its model zoo); 112×112 ArcFace crop, BGR, (x − 127.5)/127.5, 512-d",
        )
    )
