"""Local binary pattern histograms: a training-free baseline that works on real faces with no weights.

Uniform LBP with 8 neighbours on a circle of radius 2 (Ahonen et al., TPAMI 2006), histogrammed over an
8×8 grid of cells; each cell's histogram is normalised and square-rooted, so the cosine score between two
descriptors is the Hellinger kernel between their histograms. A neighbour sets its bit only when it is at
least 6 grey levels brighter than the centre (the noise margin of Tan and Triggs' local ternary patterns),
which keeps sensor and JPEG noise out of flat regions. LFW View 2 accuracy at DF 1 / 4 / 8 / 13 (bicubic):
margin 6: 70.0 / 69.7 / 67.4 / 63.6 %; margin 10: 68.8 / 67.1 / 64.5 / 57.5 %; radius 1 with no margin:
68.1 / 68.8 / 68.3 / 65.8 % (better at 12×14 than at full resolution: noise, not identity, in its codes).
"""

from lrbench import BackboneSpec, InputSpec, SPHEREFACE_96x112, hookimpl

NEIGHBOURS = 8
UNIFORM_BINS = NEIGHBOURS * (NEIGHBOURS - 1) + 3  # 58 uniform patterns + 1 bin for all others
GRID = (8, 8)  # cells across and down the crop


def build(weights):
    if weights not in (None, "none"):
        raise ValueError("lbp has no weights; leave out --weights")
    from .networks.lbp import LBPHistogram

    return LBPHistogram().eval()


@hookimpl
def register_backbones(register):
    register(
        BackboneSpec(
            name="lbp",
            build=build,
            input=InputSpec(SPHEREFACE_96x112, "RGB", mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0)),
            embedding_dim=GRID[0] * GRID[1] * UNIFORM_BINS,
            description="uniform LBP(8, 2) histograms on an 8×8 grid, Hellinger-normalised; no weights",
        )
    )
