"""A camera-like degradation chain for low-resolution face research, as an lrbench plugin.

Real low-resolution faces are not just small: optics blur them, the sensor adds noise and the camera
compresses them. ``camera`` applies, in that order: Gaussian blur (sigma, in high-resolution pixels),
area downsampling to (int(W/DF), int(H/DF)), additive Gaussian noise (in grey levels) and JPEG re-encoding
(quality), then bicubic upsampling back to the crop size. The noise of each image is drawn from its own
generator, seeded by the seed lrbench hands it (``seeds``: from the image's name, the DF and ``lrbench run
--seed``), so a run is repeatable and its scores do not depend on ``--batch-size``. Each step is an option:

    lrbench run --backbone lbp --data ~/lfw --df 4 --degradation camera \\
        --degradation-option sigma=1.5 --degradation-option noise=4 --degradation-option jpeg=60
"""

import io
import math

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from lrbench import DegradationSpec, hookimpl, probe_size


def gaussian_blur(batch: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur with reflected borders; sigma 0 leaves the batch unchanged."""
    if sigma <= 0:
        return batch
    radius = max(1, math.ceil(3 * sigma))
    x = torch.arange(-radius, radius + 1, dtype=batch.dtype, device=batch.device)
    kernel = torch.exp(-(x**2) / (2 * sigma**2))
    kernel = kernel / kernel.sum()
    channels = batch.shape[1]
    padded = F.pad(batch, (radius, radius, radius, radius), mode="reflect")
    horizontal = F.conv2d(padded, kernel.view(1, 1, 1, -1).repeat(channels, 1, 1, 1), groups=channels)
    return F.conv2d(horizontal, kernel.view(1, 1, -1, 1).repeat(channels, 1, 1, 1), groups=channels)


def jpeg_reencode(batch: torch.Tensor, quality: int) -> torch.Tensor:
    """Re-encode each image as JPEG at ``quality`` (1–100); 0 skips compression."""
    if quality <= 0:
        return batch
    images = batch.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
    decoded = []
    for image in images:
        buffer = io.BytesIO()
        Image.fromarray(image).save(buffer, format="JPEG", quality=int(quality))
        decoded.append(np.asarray(Image.open(buffer).convert("RGB")))
    return torch.from_numpy(np.stack(decoded)).permute(0, 3, 1, 2).to(batch.device, batch.dtype)


def sensor_noise(shape: torch.Size, seeds: torch.Tensor | None, device: torch.device) -> torch.Tensor:
    """Unit Gaussian noise of ``shape`` (N, C, H, W): image i's from a generator seeded by ``seeds[i]``, or all
    from torch's own generator when there are no seeds (training batches)."""
    if seeds is None:
        return torch.randn(shape, device=device)
    generators = [torch.Generator().manual_seed(int(seed)) for seed in seeds]
    return torch.stack([torch.randn(shape[1:], generator=generator) for generator in generators]).to(device)


def camera(batch: torch.Tensor, df: int, sigma: float = 1.0, noise: float = 2.0, jpeg: int = 75,
           seeds: torch.Tensor | None = None) -> torch.Tensor:
    """Blur, downsample by ``df``, add noise, JPEG-compress, upsample back; each image's noise from its seed."""
    height, width = batch.shape[-2:]
    small_w, small_h = probe_size((width, height), df)
    small = F.interpolate(gaussian_blur(batch, sigma), size=(small_h, small_w), mode="area")
    if noise > 0:
        small = small + noise * sensor_noise(small.shape, seeds, batch.device)
    small = jpeg_reencode(small.clamp(0, 255), jpeg)
    return F.interpolate(small, size=(height, width), mode="bicubic", align_corners=False).clamp(0, 255)


@hookimpl
def register_degradations(register):
    register(
        DegradationSpec(
            name="camera",
            apply=camera,
            description="Gaussian blur, area downsampling, sensor noise and JPEG, then bicubic back up",
            settings={"down": "area", "up": "bicubic"},
            options={"sigma": 1.0, "noise": 2.0, "jpeg": 75},
        )
    )
