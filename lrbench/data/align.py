"""Face alignment: a similarity transform from five landmarks onto a backbone's crop template."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image

from ..specs import CropTemplate

# Part of the crop cache's key: bump it whenever align_face or resize_aligned gives different pixels for the
# same image, landmarks and template, so that no cache built by the older code is served.
ALIGN_VERSION = 2  # 2: high-bit-depth images scaled to 8 bits (crops.eight_bit), not clipped

# Two eyes closer than this cannot be told apart: resolving two points needs at least two samples per
# their distance (Nyquist), so such landmarks are for another image, another scale, or a detector failure.
MIN_EYE_DISTANCE = 2.0
# A face is wider than twice its interocular distance (the templates' faces: 2.7 times), so an image
# narrower or lower than this cannot hold one.
MIN_IMAGE_SIDE = 2 * round(MIN_EYE_DISTANCE)
# Landmarks may fall outside the image (a face cut by the border), but not by more than this fraction of
# the image's size: points that far out were measured in another image or another coordinate system.
OUTSIDE_TOLERANCE = 0.5
POINT_NAMES = ("left eye", "right eye", "nose", "left mouth corner", "right mouth corner")


class AlignmentError(ValueError):
    """An image or landmarks that cannot give a meaningful crop; the message is the reason, for the user."""


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


def check_image_size(size: tuple[int, int]) -> None:
    """Refuse an image too small to hold a face (a 1×1 pixel, a stray icon) with AlignmentError."""
    width, height = size
    if min(width, height) < MIN_IMAGE_SIDE:
        raise AlignmentError(
            f"the image is {width}×{height} px, too small to hold a face (at least {MIN_IMAGE_SIDE} px each way)"
        )


def check_landmarks(landmarks: np.ndarray, size: tuple[int, int]) -> None:
    """Refuse, with AlignmentError naming the reason, five points that cannot give a meaningful crop of an
    image of ``size`` (width, height): an image too small for a face, a point far outside the image, points
    that all coincide, eyes too close to tell apart, or eyes in mirrored order. Anything these let through
    has a well-defined similarity transform onto a face the right way round."""
    check_image_size(size)
    width, height = size
    points = np.asarray(landmarks, dtype=np.float64).reshape(5, 2)
    if not np.isfinite(points).all():
        raise AlignmentError("the points must be finite numbers")
    low = -OUTSIDE_TOLERANCE * np.array([width, height])
    high = (1 + OUTSIDE_TOLERANCE) * np.array([width, height])
    for name, point in zip(POINT_NAMES, points):
        if (point < low).any() or (point > high).any():
            raise AlignmentError(
                f"the {name} at ({point[0]:.6g}, {point[1]:.6g}) is far outside the {width}×{height} image "
                f"(more than {OUTSIDE_TOLERANCE:.0%} of its size beyond an edge)"
            )
    if (points == points[0]).all():
        raise AlignmentError(f"all five points are the same, ({points[0, 0]:.6g}, {points[0, 1]:.6g})")
    eyes = math.dist(points[0], points[1])
    if eyes < MIN_EYE_DISTANCE:
        raise AlignmentError(
            f"the eyes are {eyes:.3g} px apart, too close to tell apart (at least {MIN_EYE_DISTANCE:g} px)"
        )
    _check_eye_order(points)


def _check_eye_order(points: np.ndarray) -> None:
    """Refuse eyes listed right eye first. Going from the left eye to the right eye, the mouth lies to the
    right-hand side in image coordinates (y down) however the face is rotated, even upside down; mirrored
    points put it on the other side, and no rotation (all a similarity transform may do) can undo that:
    the crop would come out upside down. Real faces are far from the boundary (on LFW the angle's sine is
    at least 0.95), so its sign alone decides."""
    eye_line = points[1] - points[0]
    downwards = (points[3] + points[4]) / 2 - (points[0] + points[1]) / 2
    if eye_line[0] * downwards[1] - eye_line[1] * downwards[0] < 0:
        (lx, ly), (rx, ry) = points[0], points[1]
        raise AlignmentError(
            f"the eyes are in mirrored order: the left eye ({lx:.6g}, {ly:.6g}) is on the face's right of the "
            f"right eye ({rx:.6g}, {ry:.6g}); the order is left eye, right eye, nose, left and right mouth corner, "
            "'left' being the point on the image's left in an upright face"
        )


def align_face(image: Image.Image, landmarks: np.ndarray, template: CropTemplate) -> np.ndarray:
    """Warp ``image`` so its five landmarks land on the template; returns an H×W×3 uint8 RGB crop.

    Landmarks use the pixel-centre-at-integer convention of OpenCV/MTCNN; PIL samples with centres at
    +0.5, so the inverse map is shifted accordingly. Bilinear sampling, as cv2.warpAffine's default.
    Landmarks that cannot give a meaningful crop (see ``check_landmarks``) raise AlignmentError rather
    than give a black or meaningless one.
    """
    check_landmarks(landmarks, image.size)
    forward = similarity_transform(landmarks, np.asarray(template.points))
    linear, offset = forward[:, :2], forward[:, 2]
    scale = math.sqrt(abs(np.linalg.det(linear)))
    if not (np.isfinite(forward).all() and scale > 0):
        raise AlignmentError("the points give no usable similarity transform onto the template")
    inverse_linear = np.linalg.inv(linear)
    # PIL maps output coordinate q (centre convention +0.5) to input p = A q + c.
    inverse_offset = -inverse_linear @ offset + 0.5 - inverse_linear @ np.array([0.5, 0.5])
    coeffs = (*inverse_linear[0], inverse_offset[0], *inverse_linear[1], inverse_offset[1])
    crop = image.convert("RGB").transform(template.size, Image.AFFINE, coeffs, resample=Image.BILINEAR)
    return np.asarray(crop, dtype=np.uint8)


def resize_aligned(image: Image.Image, template: CropTemplate) -> np.ndarray:
    """For crops already aligned to ``template``'s framing: a uniform resize to its size (see ``convert_aligned``)."""
    check_image_size(image.size)
    crop = image.convert("RGB")
    if crop.size != template.size:
        crop = crop.resize(template.size, Image.BICUBIC)
    return np.asarray(crop, dtype=np.uint8)


# An aligned crop may be a uniformly scaled copy of its template (a 224×224 ArcFace crop); a larger difference
# of aspect ratio than this means it is not in that template's framing at all.
ASPECT_TOLERANCE = 0.02


@dataclass(frozen=True)
class TemplateConversion:
    """How crops aligned to ``source`` become crops of ``target``: the least-squares similarity between the two
    templates' own landmark positions (rotation, uniform scale, shift: crop/pad, never a non-uniform stretch).

    An image may be its template at any uniform scale (a 224×224 ArcFace crop); one of another shape is
    refused, unless its framing is only ``assumed`` (unknown, taken to be the target's): then it is scaled
    to cover the template and centred (crop, not stretch). ``decided`` says how ``source`` was chosen.
    """

    source: CropTemplate
    target: CropTemplate
    decided: str = ""
    assumed: bool = False

    @property
    def matrix(self) -> np.ndarray:
        return similarity_transform(np.asarray(self.source.points), np.asarray(self.target.points))

    @property
    def scale(self) -> float:
        """Target pixels per source-template pixel."""
        return float(math.sqrt(abs(np.linalg.det(self.matrix[:, :2]))))

    @property
    def interocular(self) -> float:
        """The eye distance in converted crops, in their pixels: the source's, scaled. It equals the target
        template's only as far as the two templates frame a face alike."""
        return self.scale * self.source.interocular

    def describe(self) -> dict:
        """For the manifest: what was done to the crops, why, and what the face measures in them."""
        same = self.source == self.target
        return {
            "source_template": self.source.name,
            "target_template": self.target.name,
            "decided": self.decided,
            "method": "uniform resize (same framing)" if same else
            "similarity transform between the templates' landmark positions (crop/pad, rotate, uniform scale)",
            **({} if same else {"scale": round(self.scale, 4),
                                "matrix": [[round(float(v), 6) for v in row] for row in self.matrix]}),
            "interocular_px": round(self.interocular, 2),
        }

    def apply(self, image: Image.Image) -> np.ndarray:
        """One aligned image as an H×W×3 uint8 RGB crop of the target template."""
        check_image_size(image.size)
        width, height = image.size
        source_w, source_h = self.source.size
        scale_x, scale_y = width / source_w, height / source_h
        if abs(scale_x / scale_y - 1) <= ASPECT_TOLERANCE:
            if self.source == self.target:
                return resize_aligned(image, self.target)
            if scale_x > 1:  # bring a larger copy to the template's size first, antialiased, not by the warp
                image, scale_x, scale_y = image.convert("RGB").resize(self.source.size, Image.BICUBIC), 1.0, 1.0
            points = np.asarray(self.source.points) * np.array([scale_x, scale_y])
        elif self.assumed:  # the largest centred box of the template's shape, resized uniformly
            box_w, box_h = min(width, height * source_w / source_h), min(height, width * source_h / source_w)
            left, top = (width - box_w) / 2, (height - box_h) / 2
            crop = image.convert("RGB").resize(self.target.size, Image.BICUBIC, box=(left, top, left + box_w,
                                                                                     top + box_h))
            return np.asarray(crop, dtype=np.uint8)
        else:
            raise AlignmentError(
                f"the image is {width}×{height} px, not the shape of a {self.source.name} crop ({source_w}×{source_h}"
                " at any scale): converting it would stretch the face; align it from landmarks instead"
            )
        return align_face(image, points, self.target)


def convert_template(crops: np.ndarray, source: CropTemplate, target: CropTemplate) -> np.ndarray:
    """An (N, H, W, 3) uint8 batch of crops aligned to ``source`` as crops of ``target`` (``TemplateConversion``)."""
    conversion = TemplateConversion(source, target, decided="given")
    out = np.empty((len(crops), target.size[1], target.size[0], 3), dtype=np.uint8)
    for i, crop in enumerate(crops):
        out[i] = conversion.apply(Image.fromarray(np.ascontiguousarray(crop)))
    return out
