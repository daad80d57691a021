"""Face alignment: a similarity transform from five landmarks onto a backbone's crop template."""

from __future__ import annotations

import numpy as np
from PIL import Image

from .specs import CropTemplate


def similarity_transform(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity (rotation, uniform scale, translation; no reflection) mapping src → dst.

    Umeyama's closed form, the estimator sphereface/insightface alignment uses. Returns a 2×3 matrix.
    """
    src = np.asarray(src, dtype=np.float64)
    dst = np.asarray(dst, dtype=np.float64)
    src_mean, dst_mean = src.mean(0), dst.mean(0)
    src_c, dst_c = src - src_mean, dst - dst_mean
    cov = dst_c.T @ src_c / len(src)
    u, s, vt = np.linalg.svd(cov)
    d = np.ones(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        d[1] = -1
    rotation = u @ np.diag(d) @ vt
    scale = (s * d).sum() / src_c.var(0).sum()
    matrix = np.zeros((2, 3))
    matrix[:, :2] = scale * rotation
    matrix[:, 2] = dst_mean - scale * rotation @ src_mean
    return matrix


def align_face(image: Image.Image, landmarks: np.ndarray, template: CropTemplate) -> np.ndarray:
    """Warp ``image`` so its five landmarks land on the template; returns an H×W×3 uint8 RGB crop.

    Landmarks use the pixel-centre-at-integer convention of OpenCV/MTCNN; PIL samples with centres at
    +0.5, so the inverse map is shifted accordingly. Bilinear sampling, as cv2.warpAffine's default.
    """
    forward = similarity_transform(landmarks, np.asarray(template.points))
    linear, offset = forward[:, :2], forward[:, 2]
    inverse_linear = np.linalg.inv(linear)
    # PIL maps output coordinate q (centre convention +0.5) to input p = A q + c.
    inverse_offset = -inverse_linear @ offset + 0.5 - inverse_linear @ np.array([0.5, 0.5])
    coeffs = (*inverse_linear[0], inverse_offset[0], *inverse_linear[1], inverse_offset[1])
    crop = image.convert("RGB").transform(template.size, Image.AFFINE, coeffs, resample=Image.BILINEAR)
    return np.asarray(crop, dtype=np.uint8)


def resize_aligned(image: Image.Image, template: CropTemplate) -> np.ndarray:
    """For crops that are already aligned: resize to the template size only."""
    crop = image.convert("RGB")
    if crop.size != template.size:
        crop = crop.resize(template.size, Image.BICUBIC)
    return np.asarray(crop, dtype=np.uint8)
