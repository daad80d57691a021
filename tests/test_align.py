import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from lrbench import ARCFACE_112x112, SPHEREFACE_96x112
from lrbench.align import AlignmentError, align_face, check_landmarks, resize_aligned, similarity_transform


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


# -- landmarks that cannot give a meaningful crop ------------------------------------------------------------

FACE = np.array(SPHEREFACE_96x112.points) * 0.5 + [20.0, 30.0]  # a face in an 88×96 image: eyes 17.6 px apart


def _moved(index, to):
    points = FACE.copy()
    points[index] = to
    return points


@pytest.mark.parametrize(
    "points, size, reason",
    [
        (np.tile([40.0, 50.0], (5, 1)), (88, 96), "all five points are the same, (40, 50)"),
        (_moved(1, FACE[0] + [1.5, 0.5]), (88, 96), "the eyes are 1.58 px apart, too close to tell apart"),
        (_moved(3, [-44.5, 60.0]), (88, 96), "the left mouth corner at (-44.5, 60) is far outside the 88×96 image"),
        (_moved(4, [60.0, 144.5]), (88, 96), "the right mouth corner at (60, 144.5) is far outside"),
        (FACE * 1e300, (88, 96), "the left eye at (3.51473e+301, 5.58482e+301) is far outside"),
        (FACE * 1e-3, (1, 1), "the image is 1×1 px, too small to hold a face (at least 4 px each way)"),
    ],
    ids=["identical points", "eyes too close", "far left", "far below", "huge coordinates", "1×1 image"],
)
def test_meaningless_landmarks_are_refused_with_the_reason(points, size, reason):
    image = Image.new("RGB", size, (90, 90, 90))
    with pytest.raises(AlignmentError) as error:
        align_face(image, points, SPHEREFACE_96x112)
    assert str(error.value).startswith(reason)


def test_points_near_the_limits_still_give_a_crop():
    # Half the image size beyond an edge, and eyes 2 px apart, are still accepted.
    image = Image.new("RGB", (88, 96), (90, 90, 90))
    check_landmarks(_moved(4, [-44.0, 144.0]), image.size)
    check_landmarks(_moved(1, FACE[0] + [2.0, 0.0]), image.size)
    assert align_face(image, FACE, SPHEREFACE_96x112).mean() == pytest.approx(90, abs=1)


def test_a_tiny_pre_aligned_image_is_refused():
    with pytest.raises(AlignmentError, match="the image is 3×112 px, too small"):
        resize_aligned(Image.new("RGB", (3, 112)), SPHEREFACE_96x112)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(allow_nan=False, allow_infinity=False), min_size=10, max_size=10),
       st.integers(1, 12), st.integers(1, 12))
def test_any_finite_points_give_a_crop_or_an_alignment_error(values, width, height):
    image = Image.new("RGB", (width, height), (90, 90, 90))
    try:
        crop = align_face(image, np.array(values).reshape(5, 2), SPHEREFACE_96x112)
    except AlignmentError:
        return
    assert crop.shape == (112, 96, 3) and crop.dtype == np.uint8
