import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from lrbench import ARCFACE_112x112, CropTemplate, SPHEREFACE_96x112
from lrbench.data.align import (
    AlignmentError,
    TemplateConversion,
    align_face,
    check_landmarks,
    convert_template,
    resize_aligned,
    similarity_transform,
)

# dlib's chip template (plugins/dlib_resnet.py): a wider framing than ArcFace's, eyes 54.5 px apart
DLIB_LIKE = CropTemplate("dlib-like-150x150", (150, 150),
                         ((47.9, 46.0), (102.4, 46.1), (74.7, 78.2), (50.8, 105.6), (98.8, 105.7)))


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


# -- pre-aligned crops converted between templates ------------------------------------------------------------

def _face_image(seed=0, size=250):
    """A smooth random 'photo' and landmarks: a similarity image of the ArcFace template in it."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, (size // 10, size // 10, 3), dtype=np.uint8)
    image = Image.fromarray(coarse).resize((size, size), Image.BICUBIC)
    landmarks = np.array(ARCFACE_112x112.points) * 1.3 + [50.0, 40.0]
    return image, landmarks


def test_an_arcface_crop_becomes_the_sphereface_crop_of_the_same_face():
    image, landmarks = _face_image()
    arcface = align_face(image, landmarks, ARCFACE_112x112)
    direct = align_face(image, landmarks, SPHEREFACE_96x112).astype(int)
    converted = TemplateConversion(ARCFACE_112x112, SPHEREFACE_96x112).apply(Image.fromarray(arcface)).astype(int)
    assert np.abs(converted - direct).max() <= 2, "the templates differ by a shift of 8 px: the same pixels"
    squeezed = resize_aligned(Image.fromarray(arcface), SPHEREFACE_96x112).astype(int)
    assert np.abs(squeezed - direct).mean() > 10 * np.abs(converted - direct).mean(), "the old squeeze differs"


def test_a_conversion_is_a_similarity_and_reports_the_real_eye_distance():
    conversion = TemplateConversion(ARCFACE_112x112, DLIB_LIKE)
    matrix = conversion.matrix[:, :2]
    np.testing.assert_allclose(matrix @ matrix.T, conversion.scale**2 * np.eye(2), atol=1e-9)  # no stretch
    eyes = np.array(ARCFACE_112x112.points[:2]) @ conversion.matrix[:, :2].T + conversion.matrix[:, 2]
    assert conversion.interocular == pytest.approx(np.linalg.norm(eyes[1] - eyes[0]))
    assert conversion.interocular != pytest.approx(DLIB_LIKE.interocular, abs=0.5)
    described = conversion.describe()
    assert described["source_template"] == "arcface-112x112" and described["interocular_px"] == round(
        conversion.interocular, 2)


def test_a_crop_twice_the_template_size_is_converted_like_the_template_sized_one():
    image, landmarks = _face_image(1)
    small = align_face(image, landmarks, ARCFACE_112x112)
    large = Image.fromarray(small).resize((224, 224), Image.BICUBIC)
    conversion = TemplateConversion(ARCFACE_112x112, SPHEREFACE_96x112)
    difference = conversion.apply(large).astype(int) - conversion.apply(Image.fromarray(small)).astype(int)
    assert np.abs(difference).mean() < 3


def test_an_image_of_another_shape_than_its_named_template_is_refused_not_stretched():
    with pytest.raises(AlignmentError, match=r"96×112 px, not the shape of a arcface-112x112 crop"):
        TemplateConversion(ARCFACE_112x112, SPHEREFACE_96x112).apply(Image.new("RGB", (96, 112)))
    with pytest.raises(AlignmentError, match=r"112×112 px, not the shape of a sphereface-96x112 crop"):
        TemplateConversion(SPHEREFACE_96x112, SPHEREFACE_96x112).apply(Image.new("RGB", (112, 112)))


def test_unknown_framing_is_covered_and_centred_not_stretched():
    # a 250×250 image whose framing is unknown, for a 96×112 template: a centred 214×250 box, resized uniformly
    image = np.zeros((250, 250, 3), np.uint8)
    image[100:150, 100:150] = 255  # a 50×50 square in the middle
    conversion = TemplateConversion(SPHEREFACE_96x112, SPHEREFACE_96x112, assumed=True)
    crop = conversion.apply(Image.fromarray(image))[..., 0] > 127
    rows, cols = np.flatnonzero(crop.any(1)), np.flatnonzero(crop.any(0))
    assert abs(len(rows) - len(cols)) <= 1, "a square stays a square"
    assert abs((rows[0] + rows[-1]) / 2 - 55.5) <= 1 and abs((cols[0] + cols[-1]) / 2 - 47.5) <= 1


def test_convert_template_converts_a_batch():
    image, landmarks = _face_image(2)
    batch = np.stack([align_face(image, landmarks, ARCFACE_112x112)] * 2)
    converted = convert_template(batch, ARCFACE_112x112, SPHEREFACE_96x112)
    assert converted.shape == (2, 112, 96, 3) and converted.dtype == np.uint8
    np.testing.assert_array_equal(converted[0], TemplateConversion(ARCFACE_112x112, SPHEREFACE_96x112).apply(
        Image.fromarray(batch[0])))
