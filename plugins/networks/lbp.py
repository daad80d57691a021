"""Uniform LBP(8, 2) histograms as a torch module, vectorised over the batch (see plugins/lbp.py)."""

import math

import torch
from torch import nn

from ..lbp import GRID, NEIGHBOURS, UNIFORM_BINS


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

    def __init__(self, grid: tuple[int, int] = GRID, radius: float = 2.0, margin: float = 6.0):
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
