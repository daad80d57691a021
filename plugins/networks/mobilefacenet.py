"""MobileFaceNet as insightface's arcface_torch builds it, with its parameter names (see plugins/mobilefacenet.py)."""

from __future__ import annotations

import torch
from torch import nn

from lrbench import load_weights

# variant → (units in the four residual groups, channel scale); the first group of one unit is a grouped conv.
VARIANTS = {"mbf": ((1, 4, 6, 2), 2), "mbf_large": ((2, 8, 12, 4), 4)}


class ConvUnit(nn.Module):
    """Conv → BN (→ PReLU unless ``linear``), held in ``layers`` as insightface names it."""

    def __init__(self, cin: int, cout: int, kernel: int = 1, stride=1, groups=1, linear=False, pad=True):
        super().__init__()
        padding = kernel // 2 if pad else 0
        parts = [nn.Conv2d(cin, cout, kernel, stride, padding, groups=groups, bias=False), nn.BatchNorm2d(cout)]
        self.layers = nn.Sequential(*parts, *(() if linear else (nn.PReLU(cout),)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class DepthWise(nn.Module):
    """1×1 expansion to ``inner`` channels, 3×3 depthwise conv of ``stride``, 1×1 linear projection (+ input)."""

    def __init__(self, cin: int, cout: int, inner: int, stride: int, residual: bool):
        super().__init__()
        self.residual = residual
        self.layers = nn.Sequential(
            ConvUnit(cin, inner), ConvUnit(inner, inner, 3, stride, groups=inner), ConvUnit(inner, cout, linear=True)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.layers(x) if self.residual else self.layers(x)


class Residual(nn.Module):
    def __init__(self, channels: int, units: int, inner: int):
        super().__init__()
        self.layers = nn.Sequential(*(DepthWise(channels, channels, inner, 1, True) for _ in range(units)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class GDC(nn.Module):
    """Global depthwise convolution over the 7×7 map, then a linear embedding and BN1d."""

    def __init__(self, channels: int, embedding: int):
        super().__init__()
        self.layers = nn.Sequential(
            ConvUnit(channels, channels, 7, groups=channels, linear=True, pad=False),
            nn.Flatten(),
            nn.Linear(channels, embedding, bias=False),
            nn.BatchNorm1d(embedding),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class MobileFaceNet(nn.Module):
    """Normalised (N, 3, 112, 112) → (N, embedding)."""

    def __init__(self, variant: str = "mbf", embedding: int = 512):
        super().__init__()
        units, scale = VARIANTS[variant]
        low, high = 64 * scale, 128 * scale
        # insightface groups the first conv by 64 whatever the scale
        first = ConvUnit(low, low, 3, groups=64) if units[0] == 1 else Residual(low, units[0], 128)
        self.layers = nn.Sequential(
            ConvUnit(3, low, 3, 2),
            first,
            DepthWise(low, low, 128, 2, False),
            Residual(low, units[1], 128),
            DepthWise(low, high, 256, 2, False),
            Residual(high, units[2], 256),
            DepthWise(high, high, 512, 2, False),
            Residual(high, units[3], 256),
        )
        self.conv_sep = ConvUnit(high, 512)
        self.features = GDC(512, embedding)
        for module in self.modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(self.conv_sep(self.layers(x)))


def mobilefacenet(weights, variant: str, embedding: int) -> MobileFaceNet:
    """The network with ``weights`` (arcface_torch's backbone.pth as it is) loaded, unless "random"."""
    if variant not in VARIANTS:
        raise ValueError(f"variant {variant!r}: choose one of {', '.join(VARIANTS)}")
    if embedding < 1:
        raise ValueError(f"embedding {embedding}: expected a positive length")
    model = MobileFaceNet(variant, embedding)
    if weights != "random":
        load_weights(model, weights)
    return model
