"""SphereFace (Liu et al., CVPR 2017): the backbone as lrbench lists it; the network is in networks/sphereface.py."""

from lrbench import BackboneSpec, InputSpec, SPHEREFACE_96x112, hookimpl

EMBEDDING = 512
CHECKPOINT_LAYOUTS = ("sphere20a-port", "seed-sequential")  # foreign parameter names build() also reads


def build(weights, depth: int = 20, width: float = 1.0):
    from .networks.sphereface import sphereface

    return sphereface(weights, depth, width)


@hookimpl
def register_backbones(register):
    register(
        BackboneSpec(
            name="sphereface",
            build=build,
            input=InputSpec(SPHEREFACE_96x112, "BGR", mean=(127.5,) * 3, std=(128.0,) * 3),
            seed_input=InputSpec(SPHEREFACE_96x112, "BGR", mean=(127.5,) * 3, std=(127.5,) * 3),
            embedding_dim=EMBEDDING,
            needs_weights=True,
            options={"depth": 20, "width": 1.0},
            checkpoint_layouts=("native", *CHECKPOINT_LAYOUTS),
            description="SphereFace-4/10/20/36/64 (option depth, default 20 = sphere20a; width scales the channels); "
            "512-d",
        )
    )
