import numpy as np
import pytest
from PIL import Image

from lrbench import ARCFACE_112x112, SPHEREFACE_96x112
from lrbench.align import align_face, resize_aligned, similarity_transform


def test_similarity_transform_recovers_a_known_transform():
    angle, scale, shift = 0.3, 1.7, np.array([5.0, -3.0])
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    src = np.random.default_rng(0).uniform(0, 100, (5, 2))
    dst = src @ (scale * rotation).T + shift
    np.testing.assert_allclose(similarity_transform(src, dst), np.c_[scale * rotation, shift], atol=1e-9)


def dots_at(points, size=250, sigma=2.0):
    """An image with a small Gaussian spot centred exactly on each landmark."""
    yy, xx = np.mgrid[0:size, 0:size]
    image = sum(np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * sigma**2)) for x, y in points)
    return Image.fromarray(np.repeat((255 * image)[..., None], 3, axis=2).round().astype(np.uint8))


@pytest.mark.parametrize("template", [SPHEREFACE_96x112, ARCFACE_112x112])
def test_landmarks_land_on_the_template(template):
    # landmarks that are an exact similarity image of the template: every dot must land on its point
    angle, scale = np.deg2rad(12), 1.6
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    landmarks = np.array(template.points) @ (scale * rotation).T + [40.0, 20.0]
    crop = align_face(dots_at(landmarks), landmarks, template).astype(float)[..., 0]
    assert crop.shape == (template.size[1], template.size[0])
    yy, xx = np.mgrid[0 : crop.shape[0], 0 : crop.shape[1]]
    for x, y in template.points:
        weight = crop * ((xx - x) ** 2 + (yy - y) ** 2 <= 16)
        centre = (weight * xx).sum() / weight.sum(), (weight * yy).sum() / weight.sum()
        np.testing.assert_allclose(centre, (x, y), atol=0.1)


def test_aligned_images_are_only_resized():
    image = Image.fromarray(np.full((224, 192, 3), 77, np.uint8))
    crop = resize_aligned(image, SPHEREFACE_96x112)
    assert crop.shape == (112, 96, 3) and (crop == 77).all()


def test_template_interocular_distances():
    assert SPHEREFACE_96x112.interocular == pytest.approx(35.24, abs=0.01)
    assert ARCFACE_112x112.interocular == pytest.approx(35.24, abs=0.01)
