"""Classification heads for face training: softmax and the angular-margin losses (A-Softmax, CosFace, ArcFace).

Each head maps embeddings and labels to logits for cross-entropy; the margins change only the true
class's logit. Heads run in float32 (callers leave autocast first): the margins live in cosines close
to ±1, where half precision has no resolution.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .settings import MARGIN_HEADS


class MarginHead(nn.Module):
    """One weight vector per class; ``forward(embeddings, labels, step)`` → logits."""

    def __init__(self, dim: int, classes: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(classes, dim))
        nn.init.xavier_uniform_(self.weight)

    def cosines(self, embeddings: torch.Tensor) -> torch.Tensor:
        return F.linear(F.normalize(embeddings), F.normalize(self.weight)).clamp(-1, 1)


class Softmax(MarginHead):
    """Plain softmax: a linear layer with bias, no margin."""

    def __init__(self, dim: int, classes: int):
        super().__init__(dim, classes)
        self.bias = nn.Parameter(torch.zeros(classes))

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor, step: int = 0) -> torch.Tensor:
        return F.linear(embeddings, self.weight, self.bias)


class CosFace(MarginHead):
    """CosFace / AM-Softmax (Wang et al. 2018): s·(cos θ − m) for the true class, s·cos θ for the others."""

    def __init__(self, dim: int, classes: int, scale: float = 30.0, margin: float = 0.35):
        super().__init__(dim, classes)
        self.scale, self.margin = scale, margin

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor, step: int = 0) -> torch.Tensor:
        cos = self.cosines(embeddings)
        return self.scale * (cos - self.margin * F.one_hot(labels, cos.shape[1]))


class ArcFace(MarginHead):
    """ArcFace (Deng et al. 2019): s·cos(θ + m) for the true class.

    Where θ + m would pass π the target logit continues as cos θ − m·sin m (insightface's rule), so it
    keeps decreasing in θ.
    """

    def __init__(self, dim: int, classes: int, scale: float = 64.0, margin: float = 0.5):
        super().__init__(dim, classes)
        self.scale, self.margin = scale, margin

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor, step: int = 0) -> torch.Tensor:
        cos = self.cosines(embeddings)
        sin = (1 - cos**2).clamp_min(1e-12).sqrt()
        shifted = cos * math.cos(self.margin) - sin * math.sin(self.margin)
        shifted = torch.where(cos > math.cos(math.pi - self.margin), shifted, cos - self.margin * math.sin(self.margin))
        target = F.one_hot(labels, cos.shape[1]).bool()
        return self.scale * torch.where(target, shifted, cos)


# cos(mθ) as a polynomial in cos θ (Chebyshev): exact gradients, no arccos in the differentiated path.
_CHEBYSHEV = {
    1: lambda c: c,
    2: lambda c: 2 * c**2 - 1,
    3: lambda c: 4 * c**3 - 3 * c,
    4: lambda c: 8 * c**4 - 8 * c**2 + 1,
}


class ASoftmax(MarginHead):
    """SphereFace's A-Softmax (Liu et al. 2017): the true class's logit ‖x‖·ψ(θ), ψ(θ) = (−1)^k cos(mθ) − 2k.

    As in the original Caffe training, the margin is phased in: the logit is ‖x‖·(λ cos θ + ψ(θ)) / (1 + λ)
    with λ = max(λ_min, base·(1 + γ·step)^(−power)), which starts near plain softmax and anneals to λ_min.
    λ is a function of the step (not a counter), so a resumed run continues the same schedule.
    """

    def __init__(
        self,
        dim: int,
        classes: int,
        margin: int = 4,
        base: float = 1000.0,
        gamma: float = 0.12,
        power: float = 1.0,
        lambda_min: float = 5.0,
    ):
        super().__init__(dim, classes)
        if margin not in _CHEBYSHEV:
            raise ValueError(f"A-Softmax margin must be one of {sorted(_CHEBYSHEV)}, got {margin}")
        self.margin, self.base, self.gamma, self.power, self.lambda_min = int(margin), base, gamma, power, lambda_min

    def annealing(self, step: int) -> float:
        """λ at ``step``."""
        return max(self.lambda_min, self.base * (1 + self.gamma * step) ** -self.power)

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor, step: int = 0) -> torch.Tensor:
        cos = self.cosines(embeddings)
        k = torch.floor(self.margin * torch.acos(cos.detach()) / math.pi)
        psi = (1 - 2 * (k % 2)) * _CHEBYSHEV[self.margin](cos) - 2 * k
        lam = self.annealing(step)
        target = F.one_hot(labels, cos.shape[1]).bool()
        norm = embeddings.norm(dim=1, keepdim=True)
        return norm * torch.where(target, (lam * cos + psi) / (1 + lam), cos)


HEADS: dict[str, type[MarginHead]] = dict(zip(MARGIN_HEADS, (Softmax, ASoftmax, CosFace, ArcFace)))
