"""Landmarks from raw images: `lrbench landmarks`, detection inside `lrbench run`, and landmark sanity.

The detector here is a test double that recognises the synthetic faces it was shown, so these tests check
lrbench's handling of detections (decoding, choice of face, files, resumption, cache, manifest), not a
detector's accuracy.
"""

import json
import shutil

import numpy as np
import pytest
from click.testing import CliRunner
from full_disk import fill_disk
from PIL import Image

from lrbench import DetectorSpec, Face, hookimpl
from lrbench.cli import cli
from lrbench.data.align import AlignmentError, check_landmarks
from lrbench.data.detection import escape_field, read_rgb, read_without_landmarks, unescape_field
from lrbench.data.landmarks import read_landmark_lines, read_landmarks


def thumbnail(image: np.ndarray) -> np.ndarray:
    return np.asarray(Image.fromarray(image).convert("L").resize((16, 16), Image.BILINEAR), dtype=float)


class LookupDetector:
    """Finds the faces of the images it was shown: the nearest known grey 16×16 thumbnail (which survives
    greyscale, palette, CMYK and JPEG round trips) within a tolerance gives that image's points; anything
    else has no face. With ``decoys``, each face comes with a small corner face of the best score and a
    large off-centre one, for ``--pick``."""

    def __init__(self, known: list[tuple[np.ndarray, np.ndarray]]):
        self.known = known
        self.seen = 0  # images detected so far
        self.fail_after: int | None = None  # raise once this many images have been detected

    @hookimpl
    def register_detectors(self, register):
        register(DetectorSpec("lookup", self.build, "finds the faces it was shown", options={"decoys": False}))

    def build(self, weights, device, decoys: bool = False):
        def detect(images):
            if self.fail_after is not None and self.seen + len(images) > self.fail_after:
                raise KeyboardInterrupt
            self.seen += len(images)
            return [self._faces(image, decoys) for image in images]

        return detect

    def _faces(self, image: np.ndarray, decoys: bool) -> list[Face]:
        distances = [np.abs(thumbnail(image) - known).mean() for known, _ in self.known]
        if min(distances) > 6:
            return []
        points = self.known[int(np.argmin(distances))][1]
        (x1, y1), (x2, y2) = points.min(0) - 20, points.max(0) + 20
        height, width = image.shape[:2]
        face = Face((x1, y1, x2, y2), 0.9, points)
        if not decoys:
            return [face]
        small = Face((0, 0, 8, 8), 0.99, points + 100)
        large = Face((0.4 * width, 0.4 * height, 2.0 * width, 2.0 * height), 0.5, points + 200)
        return [small, face, large]


@pytest.fixture(scope="module")
def truth(synth_data) -> dict[str, np.ndarray]:
    """The synthetic LFW images' landmarks, as synth drew them."""
    return read_landmarks(synth_data.lfw_landmarks)


@pytest.fixture
def lookup(plugin_manager, synth_data, truth) -> LookupDetector:
    detector = LookupDetector([(thumbnail(read_rgb(synth_data.lfw_images / rel)), points)
                               for rel, points in truth.items()])
    plugin_manager.register_for_test(detector, name="lookup-detector")
    return detector


@pytest.fixture
def raw(tmp_path, synth_data, truth) -> tuple:
    """A folder of raw images in every supported format and mode, a corrupt file and a picture without a face;
    returns it and the landmarks each image should get."""
    root = tmp_path / "raw"
    names = sorted(truth)[:8]
    expected = {}
    for index, rel in enumerate(names[:4]):
        target = root / f"person{index % 2}" / f"{index}.jpg"
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(synth_data.lfw_images / rel, target)
        expected[target.relative_to(root).as_posix()] = truth[rel]
    converted = {
        "grey.png": lambda image: image.convert("L"),
        "deep/er/cmyk.jpg": lambda image: image.convert("CMYK"),
        "face.pgm": lambda image: image.convert("L"),
        "face.ppm": lambda image: image,
        "face.bmp": lambda image: image,
        "palette.png": lambda image: image.convert("P", palette=Image.ADAPTIVE),
        "alpha.png": lambda image: image.convert("RGBA"),
    }
    for (name, convert), rel in zip(converted.items(), names[4:] + names[:4]):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        convert(Image.open(synth_data.lfw_images / rel)).save(root / name, quality=95)
        expected[name] = truth[rel]
    (root / "broken.jpg").write_bytes(b"\xff\xd8 not really a JPEG")
    Image.new("RGB", (80, 80), (200, 180, 160)).save(root / "wall.png")
    (root / "notes.txt").write_text("not an image")
    (root / ".thumbnails").mkdir()
    shutil.copy(synth_data.lfw_images / names[0], root / ".thumbnails" / "skipped.jpg")
    return root, expected


READABLE = 12  # images in ``raw`` the detector sees: all but the corrupt one


def landmarks_cmd(*args):
    return CliRunner().invoke(cli, ["landmarks", *map(str, args), "--detector", "lookup", "--quiet"])


def test_landmarks_writes_the_points_of_every_face_in_every_image_format(lookup, raw, tmp_path):
    root, expected = raw
    result = landmarks_cmd(root, "--out", tmp_path / "landmarks.txt")
    assert result.exit_code == 0, result.output
    found = read_landmarks(tmp_path / "landmarks.txt")
    assert sorted(found) == sorted(expected)
    for rel, points in expected.items():
        np.testing.assert_array_equal(found[rel], points, err_msg=rel)
    assert result.stdout == f"wrote {tmp_path / 'landmarks.txt'}: landmarks of 11 of 13 images\n"


def test_the_file_is_sorted_tab_separated_with_two_decimals_under_a_header(lookup, raw, tmp_path):
    root, expected = raw
    landmarks_cmd(root, "--out", tmp_path / "landmarks.txt")
    header, *lines = (tmp_path / "landmarks.txt").read_text().splitlines()
    assert header.startswith("# lrbench landmarks {")
    made = json.loads(header.removeprefix("# lrbench landmarks "))
    assert {key: made[key] for key in ("detector", "options", "weights_sha256", "pick", "images")} == {
        "detector": "lookup", "options": {"decoys": False}, "weights_sha256": [], "pick": "center", "images": 13}
    assert [line.split("\t")[0] for line in lines] == sorted(expected)
    first = lines[0].split("\t")
    assert first[1:] == [f"{v:.2f}" for v in expected[first[0]].ravel()]


def test_images_without_a_face_or_unreadable_are_listed_with_the_reason(lookup, raw, tmp_path):
    root, _ = raw
    result = landmarks_cmd(root, "--out", tmp_path / "landmarks.txt")
    listing = (tmp_path / "landmarks.noface.txt").read_text().splitlines()
    assert listing[1:] == [f"broken.jpg\tcannot decode image (cannot identify image file '{root / 'broken.jpg'}')",
                           "wall.png\tno face"]
    assert "2 of 13 images have no landmarks (listed in " in result.stderr
    assert "broken.jpg (cannot decode image" in result.stderr and "wall.png (no face)" in result.stderr


def test_an_interrupted_call_is_continued_by_the_next_and_gives_the_same_file(lookup, raw, tmp_path):
    root, _ = raw
    out = tmp_path / "landmarks.txt"
    lookup.fail_after = 4
    interrupted = landmarks_cmd(root, "--out", out, "--batch-size", "2")
    assert interrupted.exit_code != 0 and not out.exists()  # nothing half-written
    assert not (tmp_path / "landmarks.noface.txt").exists()
    before, lookup.fail_after, lookup.seen = lookup.seen, None, 0
    resumed = landmarks_cmd(root, "--out", out, "--batch-size", "2")
    assert resumed.exit_code == 0, resumed.output
    assert before > 0 and lookup.seen == READABLE - before  # only the images not detected before
    assert "from the interrupted call before" in resumed.stdout
    assert landmarks_cmd(root, "--out", tmp_path / "whole.txt").exit_code == 0
    assert out.read_text() == (tmp_path / "whole.txt").read_text()
    assert not (tmp_path / ".landmarks.txt.partial").exists()


def test_a_finished_file_is_not_redone_unless_asked(lookup, raw, tmp_path):
    root, _ = raw
    out = tmp_path / "landmarks.txt"
    landmarks_cmd(root, "--out", out)
    lookup.seen = 0
    again = landmarks_cmd(root, "--out", out)
    assert again.exit_code == 0 and lookup.seen == 0 and "nothing to do" in again.stdout
    other = landmarks_cmd(root, "--out", out, "--detector-option", "decoys=true")
    assert other.exit_code == 2
    assert other.stderr == (f"Error: --out {out}: already exists (made with other settings); pass --overwrite to "
                            "detect again, or choose another file\n")
    assert landmarks_cmd(root, "--out", out, "--overwrite").exit_code == 0 and lookup.seen == READABLE
    shutil.copy(root / "grey.png", root / "new.png")
    grown = landmarks_cmd(root, "--out", out)
    assert grown.exit_code == 2
    assert grown.stderr == (f"Error: --out {out}: holds the landmarks of 13 images, but {root} now has 14; pass "
                            "--overwrite to detect again\n")


@pytest.mark.parametrize("pick, shift", [("center", 0), ("score", 100), ("largest", 200)])
def test_pick_chooses_which_of_several_faces_is_kept(lookup, raw, tmp_path, pick, shift):
    root, expected = raw
    result = landmarks_cmd(root, "--out", tmp_path / "l.txt", "--pick", pick, "--detector-option", "decoys=true")
    assert result.exit_code == 0, result.output
    np.testing.assert_allclose(read_landmarks(tmp_path / "l.txt")["grey.png"], expected["grey.png"] + shift, atol=1e-9)


def test_an_empty_folder_is_one_clear_error(lookup, tmp_path):
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    result = landmarks_cmd(tmp_path / "empty", "--out", tmp_path / "l.txt")
    assert result.exit_code == 1
    assert result.stderr == (f"Error: {tmp_path / 'empty'}: no images (.jpg, .jpeg, .png, .pgm, .ppm, .pbm, .bmp, "
                             ".webp) in it or its sub-folders\n")


def test_detector_options_and_weights_are_checked(lookup, raw, tmp_path):
    root, _ = raw
    unknown = landmarks_cmd(root, "--out", tmp_path / "l.txt", "--detector-option", "size=3")
    assert unknown.exit_code == 2
    assert unknown.stderr == "Error: --detector-option size: 'lookup' has no such option; available: decoys " \
                             "(default False)\n"
    missing = landmarks_cmd(root, "--out", tmp_path / "l.txt", "--detector-weights", tmp_path / "nope.pt")
    assert missing.exit_code == 2
    assert missing.stderr == f"Error: --detector-weights {tmp_path / 'nope.pt'}: no such file or folder\n"


# ---- on the fly, inside lrbench run ----


def run(synth_data, out, *args):
    return CliRunner().invoke(cli, ["run", "-b", "lbp", "--data", str(synth_data.lfw_root), "--df", "1",
                                    "--out", str(out), "--json", "--quiet", *map(str, args)])


def test_run_detects_on_the_fly_with_the_accuracy_of_the_true_landmarks(lookup, synth_data, tmp_path):
    # The test detector returns synth's own points, so the tolerance is zero.
    with_file = run(synth_data, tmp_path / "file")
    detected = run(synth_data, tmp_path / "detected", "--detector", "lookup", "--cache-dir", tmp_path / "cache")
    assert detected.exit_code == 0, detected.output
    accuracy = [[row["accuracy_mean"] for row in json.loads(result.stdout)["results"]]
                for result in (with_file, detected)]
    assert accuracy[0] == accuracy[1]


def test_detections_are_cached_and_the_second_run_does_not_detect(lookup, synth_data, tmp_path):
    for name in ("first", "second"):
        result = run(synth_data, tmp_path / name, "--detector", "lookup", "--cache-dir", tmp_path / "cache")
        assert result.exit_code == 0, result.output
    data = [json.loads((tmp_path / name / "manifest.json").read_text())["data"] for name in ("first", "second")]
    assert lookup.seen == data[0]["unique_images"]  # every image of the pairs once, in the first run
    assert [one["landmarks_source"]["cache"]["hit"] for one in data] == [False, True]


def test_a_changed_detector_option_is_not_served_from_the_cache(lookup, synth_data, tmp_path):
    run(synth_data, tmp_path / "a", "--detector", "lookup", "--cache-dir", tmp_path / "cache")
    seen = lookup.seen
    run(synth_data, tmp_path / "b", "--detector", "lookup", "--detector-option", "decoys=true",
        "--cache-dir", tmp_path / "cache")
    assert lookup.seen == 2 * seen


def test_the_manifest_records_where_the_landmarks_came_from(lookup, synth_data, tmp_path):
    run(synth_data, tmp_path / "detected", "--detector", "lookup", "--cache-dir", tmp_path / "cache")
    source = json.loads((tmp_path / "detected" / "manifest.json").read_text())["data"]["landmarks_source"]
    assert source["detector"] == {"name": "lookup", "plugin": "lookup-detector", "distribution": None,
                                  "version": None, "options": {"decoys": False}, "weights": []}
    assert source["pick"] == "center" and source["no_face"] == {"count": 0, "first": []}
    assert source["images"] == json.loads((tmp_path / "detected" / "manifest.json").read_text())["data"][
        "unique_images"]
    run(synth_data, tmp_path / "file")
    from_file = json.loads((tmp_path / "file" / "manifest.json").read_text())["data"]["landmarks_source"]
    # named within --data (a shared run directory leaks no path of this machine), identified by its hash
    expected = synth_data.lfw_landmarks.resolve().relative_to(synth_data.lfw_root.resolve()).as_posix()
    assert from_file["file"] == expected and len(from_file["sha256"]) == 64


def test_images_without_a_face_stop_the_run_with_their_list(lookup, synth_data, truth, tmp_path):
    lookup.known = lookup.known[1:]  # the first image is no longer recognised
    result = run(synth_data, tmp_path / "run", "--detector", "lookup", "--cache-dir", tmp_path / "cache")
    assert result.exit_code == 1 and not (tmp_path / "run").exists()
    assert result.stderr.startswith(f"Error: {synth_data.lfw_images}: detector 'lookup' found no face in 1 of ")
    assert f"images: {sorted(truth)[0]}; a run would have to drop their pairs" in result.stderr


def test_without_landmarks_or_detector_the_error_says_how_to_get_landmarks(synth_data, tmp_path):
    data = tmp_path / "lfw"
    shutil.copytree(synth_data.lfw_root, data)
    (data / "landmarks.txt").unlink()
    result = CliRunner().invoke(cli, ["run", "-b", "lbp", "--data", str(data), "--out", str(tmp_path / "run")])
    assert result.exit_code == 2
    assert result.stderr == (
        f"Error: no landmark file for the images in {data / 'images'}: pass --landmarks FILE, write one with "
        f"`lrbench landmarks {data / 'images'} --out {data / 'landmarks.txt'}`, detect faces on the fly with "
        "--detector mtcnn, or pass --aligned for pre-aligned crops\n")


def test_the_written_file_serves_a_run_like_synths_own(lookup, synth_data, tmp_path):
    assert landmarks_cmd(synth_data.lfw_images, "--out", tmp_path / "detected.txt").exit_code == 0
    written = run(synth_data, tmp_path / "written", "--landmarks", tmp_path / "detected.txt")
    own = run(synth_data, tmp_path / "own")
    assert written.exit_code == 0, written.output
    assert json.loads(written.stdout)["results"] == json.loads(own.stdout)["results"]


@pytest.mark.parametrize("args, message", [
    (["--detector-option", "decoys=true"], "--detector-option: needs --detector NAME"),
    (["--detector", "lookup", "--aligned"], "--detector lookup: not with --aligned (aligned crops need no landmarks)"),
])
def test_detector_options_that_conflict_are_refused(lookup, synth_data, tmp_path, args, message):
    result = run(synth_data, tmp_path / "run", *args)
    assert result.exit_code == 2 and result.stderr == f"Error: {message}\n"


# ---- landmark sanity ----

UPRIGHT = np.array([[30.0, 50.0], [66.0, 50.0], [48.0, 70.0], [34.0, 92.0], [62.0, 92.0]])


def test_mirrored_eye_order_is_refused():
    mirrored = UPRIGHT[[1, 0, 2, 4, 3]]
    with pytest.raises(AlignmentError, match=r"^the eyes are in mirrored order: the left eye \(66, 50\) is on the "
                                             r"face's right of the right eye \(30, 50\)"):
        check_landmarks(mirrored, (96, 112))


@pytest.mark.parametrize("degrees", [0, 45, 90, 180, 270])
def test_a_rotated_face_is_not_mistaken_for_a_mirrored_one(degrees):
    angle = np.radians(degrees)
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    check_landmarks((UPRIGHT - 50) @ rotation.T + 100, (200, 200))


def test_a_mirrored_entry_is_refused_with_its_file_and_line(synth_data, truth, tmp_path):
    names = sorted(truth)
    lines = [name + "".join(f"\t{v:.2f}" for v in truth[name].ravel()) for name in names]
    mirrored = truth[names[1]][[1, 0, 2, 4, 3]]
    lines[1] = names[1] + "".join(f"\t{v:.2f}" for v in mirrored.ravel())
    (tmp_path / "landmarks.txt").write_text("\n".join(lines) + "\n")
    result = run(synth_data, tmp_path / "run", "--landmarks", tmp_path / "landmarks.txt")
    assert result.exit_code == 1
    assert result.stderr.startswith(f"Error: {tmp_path / 'landmarks.txt'}:2: {synth_data.lfw_images / names[1]}: "
                                    "the eyes are in mirrored order")


def test_comment_lines_in_a_landmark_file_are_skipped_and_counted(tmp_path):
    points = "\t".join(["10", "20", "30", "20", "20", "30", "12", "40", "28", "40"])
    (tmp_path / "l.txt").write_text(f"# made by hand\na.jpg\t{points}\n  # another comment\nb.jpg\t{points}\n")
    found = read_landmark_lines(tmp_path / "l.txt")
    assert {name: line for name, (line, _) in found.items()} == {"a.jpg": 2, "b.jpg": 4}


def test_training_detects_its_landmarks_on_the_fly(lookup, synth_data, tmp_path):
    train = read_landmarks(synth_data.train_landmarks)
    lookup.known += [(thumbnail(read_rgb(synth_data.train_images / rel)), points) for rel, points in train.items()]
    args = ["train", "classify", "--data", synth_data.train_images, "--detector", "lookup", "--steps", "1",
            "--option", "depth=4", "--option", "width=0.125", "--batch-size", "8", "--workers", "0",
            "--cache-dir", tmp_path / "cache"]
    result = CliRunner().invoke(cli, [*map(str, args), "--out", str(tmp_path / "run")])
    assert result.exit_code == 0, result.output
    assert lookup.seen == len(train)
    entry = next((tmp_path / "cache").glob("landmarks-lookup-*.txt"))
    for rel, points in read_landmarks(entry).items():
        np.testing.assert_array_equal(points, train[rel], err_msg=rel)


def test_embed_detects_on_the_fly_too(lookup, synth_data, tmp_path):
    result = CliRunner().invoke(cli, ["embed", "-b", "lbp", "--data", str(synth_data.lfw_root), "--detector", "lookup",
                                      "--out", str(tmp_path / "e.npz"), "--quiet", "--cache-dir", str(tmp_path / "c")])
    assert result.exit_code == 0, result.output
    manifest = json.loads(str(np.load(tmp_path / "e.npz")["manifest"]))
    assert manifest["data"]["landmarks_source"]["detector"]["name"] == "lookup"


def test_an_image_whose_path_a_landmark_file_cannot_hold_is_listed_with_the_reason(lookup, synth_data, truth,
                                                                                   tmp_path):
    (tmp_path / "raw").mkdir()
    shutil.copy(synth_data.lfw_images / sorted(truth)[0], tmp_path / "raw" / "my face.jpg")
    shutil.copy(synth_data.lfw_images / sorted(truth)[0], tmp_path / "raw" / "face.jpg")
    assert landmarks_cmd(tmp_path / "raw", "--out", tmp_path / "l.txt").exit_code == 0
    assert list(read_landmarks(tmp_path / "l.txt")) == ["face.jpg"]
    assert (tmp_path / "l.noface.txt").read_text().splitlines()[1:] == [
        "my face.jpg\tits path contains white space, which a landmark file cannot hold; rename it"]


# -- what `lrbench landmarks` may replace, and names a line cannot hold --------------------------------------------


def test_overwrite_never_replaces_a_file_lrbench_did_not_write(lookup, raw, tmp_path):
    root, _ = raw
    out = tmp_path / "landmarks.txt"
    out.write_text("img.jpg 1 2 3 4 5 6 7 8 9 10\n")  # someone's own landmark file
    result = landmarks_cmd(root, "--out", out, "--overwrite")
    assert result.exit_code == 2 and result.stderr == (
        f"Error: --out {out}: already exists and is not a landmark file lrbench wrote, so lrbench will not replace "
        "it; choose another file\n")
    assert out.read_text() == "img.jpg 1 2 3 4 5 6 7 8 9 10\n" and lookup.seen == 0


def test_overwrite_never_replaces_one_of_the_images_it_scans(lookup, raw):
    root, _ = raw
    image = root / "person0" / "0.jpg"
    before = image.read_bytes()
    result = landmarks_cmd(root, "--out", image, "--overwrite")
    assert result.exit_code == 2 and result.stderr == (
        f"Error: --out {image}: already exists and is one of the images under {root}, so lrbench will not replace "
        "it; choose another file\n")
    assert image.read_bytes() == before


def test_a_list_beside_out_that_lrbench_did_not_write_is_kept(lookup, raw, tmp_path):
    root, _ = raw
    listing = tmp_path / "landmarks.noface.txt"
    listing.write_text("my notes on faces\n")
    result = landmarks_cmd(root, "--out", tmp_path / "landmarks.txt")
    assert result.exit_code == 2 and result.stderr == (
        f"Error: --out {tmp_path / 'landmarks.txt'}: {listing} (where the images without landmarks go) already "
        "exists and is not such a list written by lrbench, so lrbench will not replace it; move it or choose "
        "another --out\n")
    assert listing.read_text() == "my notes on faces\n" and not (tmp_path / "landmarks.txt").exists()


def test_names_with_a_tab_newline_or_backslash_are_listed_so_that_they_read_back(lookup, synth_data, truth, tmp_path):
    root = tmp_path / "raw"
    root.mkdir()
    odd = ["tab\there.jpg", "new\nline.jpg", "carriage\rreturn.jpg", "back\\slash\\t.jpg"]
    for name in [*odd, "plain.jpg"]:
        shutil.copy(synth_data.lfw_images / sorted(truth)[0], root / name)
    result = landmarks_cmd(root, "--out", tmp_path / "l.txt")
    assert result.exit_code == 0, result.output
    listing = tmp_path / "l.noface.txt"
    lines = listing.read_text().split("\n")
    assert len(lines) == 1 + 4 + 1 and all(line.count("\t") == 1 for line in lines[1:-1])  # header, 4 names, end
    whitespace = "its path contains white space, which a landmark file cannot hold; rename it"
    backslash = "its path contains a backslash, which a landmark file reads as a folder separator; rename it"
    assert read_without_landmarks(listing) == {**dict.fromkeys(odd[:3], whitespace), odd[3]: backslash}
    assert list(read_landmarks(tmp_path / "l.txt")) == ["plain.jpg"]
    assert len(result.stderr.strip().splitlines()) == 1  # the warning names them escaped, on one line
    assert "carriage\\rreturn.jpg" in result.stderr and "new\\nline.jpg" in result.stderr


@pytest.mark.parametrize("text", ["plain", "a\tb", "a\nb\r", "a\\tb", "ends\\", "\\\\n", ""])
def test_escaped_fields_read_back_exactly(text):
    assert "\t" not in escape_field(text) and "\n" not in escape_field(text)
    assert unescape_field(escape_field(text)) == text


def test_a_full_disk_leaves_the_previous_landmark_file_and_list_as_they_were(lookup, raw, tmp_path, monkeypatch):
    root, _ = raw
    out = tmp_path / "out" / "landmarks.txt"
    assert landmarks_cmd(root, "--out", out).exit_code == 0
    before = {path.name: path.read_bytes() for path in out.parent.iterdir()}
    assert sorted(before) == ["landmarks.noface.txt", "landmarks.txt"]
    fill_disk(monkeypatch, out.parent, calls=("fsync",))
    result = landmarks_cmd(root, "--out", out, "--overwrite", "--pick", "largest")
    assert result.exit_code == 1
    assert result.stderr == f"Error: {out}: cannot write it (No space left on device)\n"
    assert {path.name: path.read_bytes() for path in out.parent.iterdir()} == before
