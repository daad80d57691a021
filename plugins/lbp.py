"""Local binary pattern histograms: a training-free baseline that works on real faces with no weights.

Uniform LBP with 8 neighbours on a circle of radius 2 (Ahonen et al., TPAMI 2006), histogrammed over an
8×8 grid of cells; each cell's histogram is normalised and square-rooted, so the cosine score between two
descriptors is the Hellinger kernel between their histograms. A neighbour sets its bit only when it is at
least 6 grey levels brighter than the centre (the noise margin of Tan and Triggs' local ternary patterns),
which keeps sensor and JPEG noise out of flat regions. LFW View 2 accuracy at DF 1 / 4 / 8 / 13 (bicubic):
margin 6: 70.0 / 69.7 / 67.4 / 63.6 %; margin 10: 68.8 / 67.1 / 64.5 / 57.5 %; radius 1 with no margin:
68.1 / 68.8 / 68.3 / 65.8 % (better at 12×14 than at full resolution: noise, not identity, in its codes).
"""

import math

import torch
from torch import nn

from lrbench import BackboneSpec, InputSpec, SPHEREFACE_96x112, hookimpl

NEIGHBOURS = 8
UNIFORM_BINS = NEIGHBOURS * (NEIGHBOURS - 1) + 3  # 58 uniform patterns + 1 bin for all others


def _uniform_lookup() -> torch.Tensor:
    """Map each 8-bit code to its uniform-pattern bin (codes with ≤ 2 circular 0/1 transitions)."""
    lookup = torch.full((256,), UNIFORM_BINS - 1, dtype=torch.long)
    next_bin = 0
    for code in range(256):
        bits = [(code >> k) & 1 for k in range(NEIGHBOURS)]
        transitions = sum(bits[k] != bits[(k + 1) % NEIGHBOURS] for k in range(NEIGHBOURS))
        if transitions <= 2:
            lookup[code] = next_bin
            next_bin += 1
    return lookup


class LBPHistogram(nn.Module):
    """(N, 3, H, W) RGB in 0…255 → (N, cells·59) LBP descriptor; vectorised over the whole batch."""

    def __init__(self, grid: tuple[int, int] = (8, 8), radius: float = 2.0, margin: float = 6.0):
        super().__init__()
        self.grid, self.radius, self.margin = grid, radius, margin
        self.register_buffer("lookup", _uniform_lookup(), persistent=False)
        self.register_buffer("luma", torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1), persistent=False)

    def forward(self, rgb: torch.Tensor) -> torch.Tensor:
        grey = (rgb * self.luma).sum(1)
        codes = self._codes(grey)
        n, height, width = codes.shape
        cells_x, cells_y = self.grid
        cell_col = torch.arange(width, device=codes.device) * cells_x // width
        cell_row = torch.arange(height, device=codes.device) * cells_y // height
        cell = (cell_row[:, None] * cells_x + cell_col[None, :]).expand(n, -1, -1)
        index = (cell * UNIFORM_BINS + self.lookup[codes]).reshape(n, -1)
        hist = torch.zeros(n, cells_x * cells_y * UNIFORM_BINS, device=codes.device)
        hist.scatter_add_(1, index, torch.ones_like(index, dtype=hist.dtype))
        hist = hist.view(n, cells_x * cells_y, UNIFORM_BINS)
        hist = hist / hist.sum(-1, keepdim=True).clamp_min(1)
        return hist.sqrt().flatten(1)

    def _codes(self, grey: torch.Tensor) -> torch.Tensor:
        """8-bit codes: bit k set when neighbour k (bilinearly sampled on the circle) ≥ centre + margin."""
        pad = math.ceil(self.radius) + 1
        padded = nn.functional.pad(grey[:, None], (pad, pad, pad, pad), mode="replicate")[:, 0]
        height, width = grey.shape[-2:]
        codes = torch.zeros_like(grey, dtype=torch.long)
        for k in range(NEIGHBOURS):
            angle = 2 * math.pi * k / NEIGHBOURS
            dy, dx = -self.radius * math.sin(angle), self.radius * math.cos(angle)
            neighbour = self._sample(padded, pad + dy, pad + dx, height, width)
            codes |= (neighbour >= grey + self.margin - 1e-4).long() << k
        return codes

    @staticmethod
    def _sample(padded: torch.Tensor, y: float, x: float, height: int, width: int) -> torch.Tensor:
        """The image shifted by a fractional offset, by bilinear interpolation of four integer shifts."""
        y0, x0 = math.floor(y), math.floor(x)
        fy, fx = y - y0, x - x0
        out = 0
        for oy, wy in ((0, 1 - fy), (1, fy)):
            for ox, wx in ((0, 1 - fx), (1, fx)):
                if wy * wx > 1e-9:
                    out = out + wy * wx * padded[:, y0 + oy : y0 + oy + height, x0 + ox : x0 + ox + width]
        return out


def build(weights):
    if weights not in (None, "none"):
        raise ValueError("lbp has no weights; leave out --weights")
    return LBPHistogram().eval()


@hookimpl
def register_backbones(register):
    grid = LBPHistogram().grid
    register(
        BackboneSpec(
            name="lbp",
            build=build,
            input=InputSpec(SPHEREFACE_96x112, "RGB", mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0)),
            embedding_dim=grid[0] * grid[1] * UNIFORM_BINS,
            description="uniform LBP(8, 2) histograms on an 8×8 grid, Hellinger-normalised; no weights",
        )
    )
