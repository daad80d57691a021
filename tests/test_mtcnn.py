"""The built-in MTCNN detector: facenet-pytorch's weights, its results on LFW, batching and bad weights."""

import shutil

import numpy as np
import pytest
import torch
from lrbench_plugins.mtcnn import NETWORKS, build, packaged_weights
from lrbench_plugins.networks import mtcnn
from lrbench_plugins.networks.mtcnn import load_networks
from PIL import Image

from lrbench import DataError, Face, registry


@pytest.fixture(scope="module")
def detector():
    return build()


def read_lfw(root, every: int, offset: int = 0):
    """Every ``every``-th line of the shared landmarks.txt: (decoded RGB image, (5, 2) reference points)."""
    lines = (root / "landmarks.txt").read_text().splitlines()[offset::every]
    for line in lines:
        name, *values = line.split("\t")
        image = np.asarray(Image.open(root / "lfw-deepfunneled" / name).convert("RGB"))
        yield image, np.array(values, float).reshape(5, 2)


def nearest_centre(faces: list[Face], image: np.ndarray) -> Face:
    centre = np.array(image.shape[1::-1]) / 2
    return min(faces, key=lambda f: np.hypot(*(np.add(f.box[:2], f.box[2:]) / 2 - centre)))


def point_error(face: Face, reference: np.ndarray) -> float:
    """The largest of the five point distances, in pixels."""
    return float(np.linalg.norm(face.points - reference, axis=1).max())


def test_packaged_weights_load_strictly_into_the_three_networks():
    networks, files = load_networks(packaged_weights())
    assert [f.name for f in files] == [f"{name}.pt" for name in NETWORKS]
    for network, file in zip(networks, files):
        stored = torch.load(file, weights_only=True)
        own = network.state_dict()
        assert list(own) == list(stored)
        assert all(torch.equal(own[key], stored[key]) for key in stored)


def test_registered_through_the_plugin_manager_with_its_options():
    spec = registry.detector("mtcnn")
    assert spec.options == {
        "min_face_size": 20,
        "pnet_threshold": 0.6,
        "rnet_threshold": 0.7,
        "onet_threshold": 0.7,
        "factor": 0.709,
    }
    detect = spec.build(None, torch.device("cpu"), **spec.options)
    assert detect.weights_files == [packaged_weights().resolve() / f"{name}.pt" for name in NETWORKS]


def lfw_errors(detect, root, every: int, offset: int = 0) -> np.ndarray:
    """Point error of the face nearest the centre against landmarks.txt, per image (inf: no face)."""
    images, references = zip(*read_lfw(root, every, offset))
    found = detect(list(images))
    return np.array(
        [point_error(nearest_centre(f, i), r) if f else np.inf for f, i, r in zip(found, images, references)]
    )


def test_reproduces_the_shared_lfw_landmarks(shared_lfw, detector):
    """landmarks.txt was made by facenet-pytorch's MTCNN with these weights: the same points, up to rounding
    (benchmarks/bench_detector.py compares all 13,233 images)."""
    errors = lfw_errors(detector, shared_lfw, every=200)  # 67 images
    assert np.median(errors) < 0.5
    assert np.mean(errors <= 2) >= 0.99


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_reproduces_the_shared_lfw_landmarks_on_cuda(shared_lfw):
    errors = lfw_errors(build(device=torch.device("cuda")), shared_lfw, every=100, offset=7)
    assert np.median(errors) < 0.5
    assert np.mean(errors <= 2) >= 0.99


def test_batched_detection_equals_one_image_at_a_time(synth_data, detector, monkeypatch):
    paths = sorted(synth_data.lfw_images.rglob("*_0001.jpg"))[:8]
    images = [np.asarray(Image.open(path).convert("RGB")) for path in paths]
    images += [image[3:240, 5:228] for image in images[:4]]  # another size, odd: a second group
    monkeypatch.setattr(detector, "stack_pixels", 5 * 250 * 250)  # the 250 × 250 group in two stacks
    monkeypatch.setattr(mtcnn, "CROPS_PER_CHUNK", 7)  # R- and O-Net in several runs
    together = detector(images)
    monkeypatch.undo()
    alone = [detector([image])[0] for image in images]
    assert sum(map(len, together)) >= 2  # faces to compare (MTCNN finds some of the synthetic ones)
    assert [len(faces) for faces in together] == [len(faces) for faces in alone]
    for a, b in zip(sum(together, []), sum(alone, [])):
        assert np.allclose(a.box, b.box, atol=1e-3) and abs(a.score - b.score) < 1e-5
        assert np.allclose(a.points, b.points, atol=1e-3)


def test_faces_are_plain_values_largest_box_first(synth_data, detector):
    images = [np.asarray(Image.open(p).convert("RGB")) for p in sorted(synth_data.lfw_images.rglob("*.jpg"))[:12]]
    faces = [face for found in detector(images) for face in found]
    assert faces
    for face in faces:
        assert len(face.box) == 4 and all(isinstance(v, float) for v in face.box)
        assert 0.7 < face.score <= 1
        assert face.points.shape == (5, 2) and face.points.dtype == np.float64
    for found in detector(images):
        areas = [(f.box[2] - f.box[0]) * (f.box[3] - f.box[1]) for f in found]
        assert areas == sorted(areas, reverse=True)


def test_images_without_a_face_give_no_faces(detector):
    grey = np.full((120, 160, 3), 128, np.uint8)
    noise = np.random.default_rng(0).integers(0, 256, (97, 131, 3), dtype=np.uint8)
    tiny = np.zeros((15, 15, 3), np.uint8)  # smaller than the smallest face searched for (20 px)
    assert detector([grey, noise, tiny]) == [[], [], []]
    assert detector([]) == []


def test_greyscale_odd_size_images_find_the_same_face(shared_lfw, detector):
    for colour, reference in read_lfw(shared_lfw, every=2000):
        image = np.asarray(Image.fromarray(colour).convert("L").convert("RGB"))[7:240, 4:231]  # 233 × 227
        (face,) = detector([image])[0]
        assert point_error(face, reference - (4, 7)) < 6  # another pixel grid and no colour: close, not equal


@pytest.mark.parametrize(
    "option, message",
    [
        ({"factor": 1.0}, "factor=1.0: expected the pyramid's scale step, between 0 and 1"),
        ({"min_face_size": 0}, "min_face_size=0: expected the smallest face's size in pixels, at least 1"),
        ({"rnet_threshold": 1.5}, "rnet_threshold=1.5: expected a probability in 0…1"),
    ],
)
def test_unusable_options_are_value_errors_naming_the_option(option, message):
    with pytest.raises(ValueError) as error:
        build(**option)
    assert str(error.value) == message


@pytest.fixture
def weights_copy(tmp_path):
    folder = tmp_path / "weights"
    shutil.copytree(packaged_weights(), folder)
    return folder


@pytest.mark.parametrize(
    "content, problem",
    [
        ("rnet", "checkpoint fits none of the layouts"),  # another network's state dict
        (b"PK\x03\x04 not really a zip", "truncated or damaged checkpoint"),  # a zip archive's start only
        ("a text file\n", "a text file"),
    ],
)
def test_a_weights_file_that_is_not_mtcnns_is_one_line_naming_it(weights_copy, content, problem):
    target = weights_copy / "pnet.pt"
    if content == "rnet":
        shutil.copy(weights_copy / "rnet.pt", target)
    elif isinstance(content, bytes):
        target.write_bytes(content)
    else:
        target.write_text(content)
    with pytest.raises(DataError) as error:
        build(weights_copy)
    assert str(error.value).startswith(f"{target}: ") and problem in str(error.value)
    assert "\n" not in str(error.value)


def test_a_missing_network_file_is_named(weights_copy):
    (weights_copy / "onet.pt").unlink()
    with pytest.raises(DataError, match=f"^{weights_copy / 'onet.pt'}: no such checkpoint file$"):
        build(weights_copy)


def test_weights_must_be_a_folder_of_the_three_files(weights_copy):
    with pytest.raises(ValueError, match="^expected a folder holding MTCNN's pnet.pt, rnet.pt, onet.pt$"):
        build(weights_copy / "pnet.pt")


def test_user_weights_are_recorded(weights_copy):
    assert build(weights_copy).weights_files == [(weights_copy / f"{name}.pt").resolve() for name in NETWORKS]
