"""MobileFaceNet as insightface's arcface_torch trains it (``mbf``, ``mbf_large``; Chen et al., 2018).

A stride-2 3×3 stem, a grouped 3×3 conv (or, in ``mbf_large``, residual units), then three times a
downsampling depthwise unit (1×1 expand, 3×3 depthwise of stride 2, 1×1 linear projection) followed by residual
depthwise units of stride 1; a 1×1 conv to 512 channels and the GDC head (7×7 depthwise conv, flatten,
linear without bias, BN1d): 112×112 ArcFace crop → 512-d. Convolutions are followed by BN and, except the
linear projections, PReLU. Parameter names are insightface's (``layers.3.layers.0.layers.1.layers.0.weight``,
``conv_sep.layers.0.weight``, ``features.layers.2.weight``), so its ``backbone.pth`` files load as they are.
"""

from lrbench import ARCFACE_112x112, BackboneSpec, InputSpec, hookimpl


def build(weights, variant: str = "mbf", embedding: int = 512):
    from .networks.mobilefacenet import mobilefacenet

    return mobilefacenet(weights, variant, embedding)


@hookimpl
def register_backbones(register):
    register(
        BackboneSpec(
            name="mbf",
            build=build,
            input=InputSpec(ARCFACE_112x112, "RGB", mean=(127.5,) * 3, std=(127.5,) * 3),
            embedding_dim=lambda variant, embedding: embedding,
            flip_fusion="sum",  # insightface's verification adds the mirror image's embedding
            needs_weights=True,
            options={"variant": "mbf", "embedding": 512},
            checkpoint_layouts=("native (arcface_torch backbone.pth: plain, module., fp16)",),
            description="insightface arcface_torch MobileFaceNet (option variant=mbf|mbf_large; backbone.pth); "
            "112×112 ArcFace crop, RGB, (x − 127.5)/127.5, 512-d",
        )
    )
