"""The crop cache: an entry is used only if it verifies, its key covers everything that changes a crop,
and a cache that cannot be used means running without it; decoding refuses images over the pixel limit."""

import os
import shutil
from pathlib import Path

import numpy as np
import PIL
import pytest
from PIL import Image

from lrbench.data import crops
from lrbench.data.crops import cache_key, images_digest, load_crops
from lrbench.data.landmarks import landmarks_for
from lrbench.errors import DataError, UsageError
from lrbench.specs import ARCFACE_112x112, SPHEREFACE_96x112

TEMPLATE = SPHEREFACE_96x112
IMAGES = ["a/1.bmp", "a/2.bmp", "b/1.bmp"]


def _write_images(root, seed):
    rng = np.random.default_rng(seed)
    for rel in IMAGES:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (48, 40, 3), dtype=np.uint8)).save(root / rel)


@pytest.fixture
def faces(tmp_path):
    """Three 40×48 noise images (BMP: the file size depends only on the image size) and their landmarks."""
    root = tmp_path / "faces"
    _write_images(root, seed=0)
    points = np.array(TEMPLATE.points) * 0.4 + [2.0, 3.0]
    line = "".join(f"\t{v:.2f}" for v in points.ravel())
    (tmp_path / "landmarks.txt").write_text("".join(f"{rel}{line}\n" for rel in IMAGES))
    return root


@pytest.fixture
def warned(monkeypatch):
    """The warning lines the crop step prints."""
    lines = []
    monkeypatch.setattr(crops, "warn", lines.append)
    return lines


def load(root, cache, landmarks=None, template=TEMPLATE):
    return load_crops(root, IMAGES, template, landmarks, workers=1, cache_dir=cache, show_progress=False)


def fresh(root, landmarks=None):
    return load(root, None, landmarks)[0]


def test_a_second_load_is_a_verified_hit(faces, tmp_path, warned):
    first, note = load(faces, tmp_path / "cache")
    assert note["hit"] is False and note["path"].startswith(str(tmp_path / "cache"))
    second, note = load(faces, tmp_path / "cache")
    assert note == {"key": note["key"], "images_sha256": images_digest(faces, IMAGES), "path": note["path"],
                    "hit": True, "rebuilt": False, "rebuild_reason": None, "cache_error": None}
    np.testing.assert_array_equal(first, second)
    assert first.shape == (3, 112, 96, 3) and not warned


def _flip_last_byte(path, other):
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))


def _truncate(path, other):
    path.write_bytes(path.read_bytes()[:-7])


def _empty(path, other):
    path.write_bytes(b"")


def _numpy_array_of_the_right_shape(path, other):
    with open(path, "wb") as handle:
        np.save(handle, np.zeros((3, 112, 96, 3), np.uint8))


def _another_sets_entry(path, other):
    shutil.copyfile(other, path)


DAMAGE = {
    "a flipped pixel byte": (_flip_last_byte, "checksum"),
    "truncated": (_truncate, "bytes, expected"),
    "zero bytes": (_empty, "empty file"),
    "a valid array of the right shape": (_numpy_array_of_the_right_shape, "not an lrbench crop cache file"),
    "another crop set's valid entry": (_another_sets_entry, "header does not match"),
}


@pytest.mark.parametrize("damage", DAMAGE)
def test_a_damaged_entry_is_rebuilt_with_one_warning(damage, faces, tmp_path, warned):
    other_root = tmp_path / "other"
    _write_images(other_root, seed=1)  # same names and sizes, other pixels: an entry of the very same shape
    other = load(other_root, tmp_path / "cache")[1]["path"]
    expected, note = load(faces, tmp_path / "cache")
    entry = Path(note["path"])
    apply, reason = DAMAGE[damage]
    apply(entry, other)

    got, note = load(faces, tmp_path / "cache")
    np.testing.assert_array_equal(got, expected)
    assert note["hit"] is False and note["rebuilt"] is True and reason in note["rebuild_reason"]
    assert len(warned) == 1 and str(entry) in warned[0] and reason in warned[0]
    assert load(faces, tmp_path / "cache")[1]["hit"] is True, "the rebuilt entry is stored"


def test_an_image_edited_in_place_with_the_same_size_and_mtime_is_not_served_stale(faces, tmp_path):
    load(faces, tmp_path / "cache")
    victim = faces / IMAGES[1]
    stat = victim.stat()
    Image.fromarray(np.full((48, 40, 3), 200, np.uint8)).save(victim)
    os.utime(victim, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert victim.stat().st_size == stat.st_size and victim.stat().st_mtime_ns == stat.st_mtime_ns

    got, note = load(faces, tmp_path / "cache")
    assert note["hit"] is False
    assert (got[1] == 200).all()


def test_the_key_covers_landmarks_template_alignment_version_and_pillow(faces, tmp_path, monkeypatch):
    landmarks = landmarks_for(IMAGES, tmp_path / "landmarks.txt")
    key = cache_key(faces, IMAGES, TEMPLATE, landmarks)
    moved = landmarks_for(IMAGES, tmp_path / "landmarks.txt")
    moved.points[2, 0, 0] += 0.01
    changes = {
        "landmarks": cache_key(faces, IMAGES, TEMPLATE, moved),
        "pre-aligned": cache_key(faces, IMAGES, TEMPLATE, None),
        "template": cache_key(faces, IMAGES, ARCFACE_112x112, landmarks),
        "order": cache_key(faces, IMAGES[::-1], TEMPLATE, landmarks),
    }
    monkeypatch.setattr(crops, "ALIGN_VERSION", crops.ALIGN_VERSION + 1)
    changes["alignment version"] = cache_key(faces, IMAGES, TEMPLATE, landmarks)
    monkeypatch.undo()
    monkeypatch.setattr(PIL, "__version__", "0.0.1")
    changes["Pillow version"] = cache_key(faces, IMAGES, TEMPLATE, landmarks)
    assert all(changed != key for changed in changes.values()), changes
    assert len(set(changes.values())) == len(changes)


def test_changed_landmarks_are_a_miss(faces, tmp_path):
    landmarks = landmarks_for(IMAGES, tmp_path / "landmarks.txt")
    load(faces, tmp_path / "cache", landmarks)
    moved = landmarks_for(IMAGES, tmp_path / "landmarks.txt")
    moved.points[0] += 1.0
    got, note = load(faces, tmp_path / "cache", moved)
    assert note["hit"] is False
    np.testing.assert_array_equal(got, fresh(faces, moved))


def test_a_file_in_the_way_of_the_cache_folder_means_running_uncached(faces, tmp_path, warned):
    blocker = tmp_path / "cache"
    blocker.write_text("mine")
    got, note = load(faces, blocker)
    np.testing.assert_array_equal(got, fresh(faces))
    assert note["hit"] is False and "not a folder" in note["cache_error"]
    assert len(warned) == 1 and str(blocker) in warned[0] and "without the cache" in warned[0]
    assert blocker.read_text() == "mine"


def test_a_folder_in_the_way_of_the_cache_file_means_running_uncached(faces, tmp_path, warned):
    entry = Path(load(faces, tmp_path / "cache")[1]["path"])
    entry.unlink()
    entry.mkdir()
    (entry / "keep").write_text("mine")
    got, note = load(faces, tmp_path / "cache")
    np.testing.assert_array_equal(got, fresh(faces))
    assert note["hit"] is False and "folder is in the way" in note["cache_error"]
    assert len(warned) == 1 and str(entry) in warned[0]
    assert (entry / "keep").read_text() == "mine"


def test_a_read_only_cache_folder_means_running_uncached(faces, tmp_path, warned):
    cache = tmp_path / "cache"
    cache.mkdir()
    cache.chmod(0o555)
    try:
        if os.access(cache, os.W_OK):
            pytest.skip("this user (root?) can write to read-only folders")
        got, note = load(faces, cache)
        assert note["hit"] is False and "cannot write" in note["cache_error"]
        assert len(warned) == 1 and str(cache) in warned[0] and "without the cache" in warned[0]
        assert not list(cache.iterdir()), "no temporary file is left behind"
    finally:
        cache.chmod(0o755)
    np.testing.assert_array_equal(got, fresh(faces))


def test_a_cache_folder_that_refuses_writes_means_running_uncached(faces, tmp_path, warned, monkeypatch):
    # What a read-only folder or file system gives, also where the tests run as root.
    def refuse(path, content):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(crops, "write_atomic", refuse)
    got, note = load(faces, tmp_path / "cache")
    np.testing.assert_array_equal(got, fresh(faces))
    assert note["cache_error"] == "cannot write it (Permission denied)"
    assert len(warned) == 1 and str(tmp_path / "cache") in warned[0] and "without the cache" in warned[0]


def test_missing_images_are_listed(faces, tmp_path):
    (faces / IMAGES[2]).unlink()
    with pytest.raises(DataError, match=r"^1 of 3 images missing under .*faces: b/1\.bmp$"):
        load(faces, tmp_path / "cache")

def test_an_image_that_cannot_be_read_is_named(faces, tmp_path):
    (faces / IMAGES[0]).unlink()
    (faces / IMAGES[0]).mkdir()
    with pytest.raises(DataError, match=r"^\S+/faces/a/1\.bmp: cannot read image \(Is a directory\)$"):
        load(faces, tmp_path / "cache")


# -- landmarks that cannot give a crop, found when the image is decoded -------------------------------------


def test_points_far_outside_the_image_name_the_landmark_line(faces, tmp_path):
    lines = (tmp_path / "landmarks.txt").read_text().splitlines()
    lines[1] = IMAGES[1] + "".join(f"\t{v + 500:.2f}" for v in np.array(TEMPLATE.points).ravel())
    (tmp_path / "landmarks.txt").write_text("\n".join(lines) + "\n")
    landmarks = landmarks_for(IMAGES, tmp_path / "landmarks.txt")
    with pytest.raises(DataError) as error:
        load(faces, tmp_path / "cache", landmarks)
    assert str(error.value).startswith(f"{tmp_path / 'landmarks.txt'}:2: {faces / IMAGES[1]}: the left eye at")
    assert "far outside the 40×48 image" in str(error.value)


def test_a_one_pixel_image_names_the_landmark_line(faces, tmp_path):
    Image.new("RGB", (1, 1)).save(faces / IMAGES[2])
    landmarks = landmarks_for(IMAGES, tmp_path / "landmarks.txt")
    with pytest.raises(DataError, match=r"landmarks\.txt:3: .*b/1\.bmp: the image is 1×1 px, too small"):
        load(faces, tmp_path / "cache", landmarks)


# -- decompression bombs ------------------------------------------------------------------------------------


@pytest.mark.parametrize("side", [40, 64], ids=["over the limit", "over twice the limit"])
def test_an_image_over_the_pixel_limit_is_a_data_error_naming_it(side, tmp_path, monkeypatch):
    # Pillow warns above its limit and raises above twice it; both must be the same clear error.
    Image.new("RGB", (side, side)).save(tmp_path / "big.png")
    monkeypatch.setenv("LRBENCH_MAX_IMAGE_PIXELS", "1000")
    with pytest.raises(DataError) as error:
        load_crops(tmp_path, ["big.png"], TEMPLATE, None, cache_dir=None, show_progress=False)
    message = str(error.value)
    assert message.startswith(f"{tmp_path / 'big.png'}: {side}×{side} = {side * side:,} pixels")
    assert "limit of 1,000" in message and "LRBENCH_MAX_IMAGE_PIXELS" in message


def test_the_pixel_limit_can_be_raised(tmp_path, monkeypatch):
    Image.new("RGB", (64, 64), (9, 9, 9)).save(tmp_path / "big.png")
    monkeypatch.setenv("LRBENCH_MAX_IMAGE_PIXELS", "4096")
    got, _ = load_crops(tmp_path, ["big.png"], TEMPLATE, None, cache_dir=None, show_progress=False)
    assert (got == 9).all()


def test_a_malformed_pixel_limit_is_a_usage_error(faces, monkeypatch):
    monkeypatch.setenv("LRBENCH_MAX_IMAGE_PIXELS", "lots")
    with pytest.raises(UsageError, match=r"^LRBENCH_MAX_IMAGE_PIXELS=lots: expected a whole number"):
        load(faces, None)



# -- high-bit-depth images are scaled by their type's range, not clipped -------------------------------------

def _high_bit_depth_copies(folder, grey):
    """The same greyscale picture as 8-bit PNG and as every high-bit-depth file a user may hold."""
    import cv2

    folder.mkdir()
    Image.fromarray(grey).save(folder / "8bit.png")
    Image.fromarray(grey.astype(np.uint16) * 257).save(folder / "16bit.png")
    Image.fromarray(grey.astype(np.uint16) * 257).save(folder / "16bit.tif")
    cv2.imwrite(str(folder / "16bit-rgb.png"), np.repeat(grey[..., None].astype(np.uint16) * 257, 3, axis=2))
    Image.fromarray(grey.astype(np.int32) * 257, mode="I").save(folder / "32bit-int.tif")
    Image.fromarray(grey.astype(np.float32) / 255, mode="F").save(folder / "float-0-1.tif")
    return ["16bit.png", "16bit.tif", "16bit-rgb.png", "32bit-int.tif", "float-0-1.tif"]


def test_a_high_bit_depth_copy_gives_the_crops_of_its_8_bit_original(tmp_path):
    grey = np.random.default_rng(3).integers(0, 256, (48, 40), dtype=np.uint8)
    copies = _high_bit_depth_copies(tmp_path / "faces", grey)
    got, _ = load_crops(tmp_path / "faces", ["8bit.png", *copies], TEMPLATE, None, workers=1, cache_dir=None,
                        show_progress=False)
    assert got[0].max() > 200, "the original is not dark: clipping would show"
    for i, name in enumerate(copies, start=1):
        np.testing.assert_array_equal(got[i], got[0], err_msg=name)


def test_the_detector_sees_a_16_bit_image_as_its_8_bit_original(tmp_path):
    from lrbench.data.detection import read_rgb

    grey = np.random.default_rng(4).integers(0, 256, (48, 40), dtype=np.uint8)
    _high_bit_depth_copies(tmp_path / "faces", grey)
    np.testing.assert_array_equal(read_rgb(tmp_path / "faces" / "16bit.png"), read_rgb(tmp_path / "faces" / "8bit.png"))


def test_a_float_image_holding_nan_is_refused_naming_it(tmp_path):
    values = np.full((48, 40), 0.5, np.float32)
    values[3, 3] = np.nan
    Image.fromarray(values, mode="F").save(tmp_path / "nan.tif")
    with pytest.raises(DataError, match=r"nan\.tif: holds NaN"):
        load_crops(tmp_path, ["nan.tif"], TEMPLATE, None, workers=1, cache_dir=None, show_progress=False)
