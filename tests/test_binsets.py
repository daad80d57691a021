"""insightface .bin sets: the restricted reader, ``lrbench run --protocol FILE.bin`` and ``lrbench bin make``."""

import builtins
import errno
import io
import json
import os
import pickle
import re
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from lrbench import ARCFACE_112x112, BackboneSpec, InputSpec, hookimpl
from lrbench.cli import cli
from lrbench.data.binsets import fold_ids, load_bin, read_bin
from lrbench.errors import DataError, LrbenchError, UsageError
from lrbench.eval.engine import EvalSettings, evaluate
from lrbench.fileio import sha256_file


def png(value: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (112, 112), (value, 255 - value, 7)).save(buffer, "PNG")
    return buffer.getvalue()


def write_bin(path: Path, payload, protocol: int = 4) -> Path:
    path.write_bytes(pickle.dumps(payload, protocol=protocol))
    return path


def small_set(pairs: int = 10) -> tuple[list[bytes], list[bool]]:
    return [png(i) for i in range(2 * pairs)], [i % 2 == 0 for i in range(pairs)]


def one_line(exc_info) -> str:
    message = str(exc_info.value)
    assert "\n" not in message
    return message


# reading


def test_a_bin_reads_as_pairs_2i_2i_plus_1_in_ten_folds_of_aligned_crops(tmp_path):
    images, issame = small_set(20)
    path = write_bin(tmp_path / "set.bin", (images, issame))
    pairs = load_bin(path, tmp_path / "cache")
    assert pairs.aligned and pairs.source == path and pairs.same.tolist() == issame
    assert pairs.first.tolist() == list(range(0, 40, 2)) and pairs.second.tolist() == list(range(1, 40, 2))
    assert pairs.folds.tolist() == [k for k in range(10) for _ in range(2)]
    assert [(pairs.root / name).read_bytes() for name in pairs.images] == images  # the bytes, not re-encoded
    assert pairs.root == tmp_path / "cache" / f"bin-{sha256_file(path)[:24]}"


def test_both_images_of_a_pair_share_a_folder_so_intervals_resample_pairs(tmp_path):
    pairs = load_bin(write_bin(tmp_path / "set.bin", small_set(10)), tmp_path / "cache")
    assert pairs.images[:4] == ["01/1.png", "01/2.png", "02/1.png", "02/2.png"]


def test_folds_are_insightface_consecutive_blocks_the_first_ones_longer():
    assert np.bincount(fold_ids(6000)).tolist() == [600] * 10
    assert np.bincount(fold_ids(23)).tolist() == [3, 3, 3, 2, 2, 2, 2, 2, 2, 2]
    assert (np.diff(fold_ids(23)) >= 0).all()


def test_a_second_load_reuses_the_unpacked_images(tmp_path):
    path = write_bin(tmp_path / "set.bin", small_set(10))
    first = load_bin(path, tmp_path / "cache")
    marker = first.root / first.images[0]
    stamp = marker.stat().st_mtime_ns
    assert load_bin(path, tmp_path / "cache").root == first.root and marker.stat().st_mtime_ns == stamp


def test_a_damaged_unpacked_image_is_unpacked_again(tmp_path):
    path = write_bin(tmp_path / "set.bin", small_set(10))
    first = load_bin(path, tmp_path / "cache")
    damaged = first.root / first.images[5]
    damaged.write_bytes(damaged.read_bytes()[:10])
    assert (load_bin(path, tmp_path / "cache").root / first.images[5]).read_bytes() == small_set(10)[0][5]


def refuse_writes_under(monkeypatch, folder: Path | None) -> None:
    """``Path.write_bytes`` fails with ENOSPC under ``folder`` (everywhere if None), as on a full disk."""
    real = Path.write_bytes

    def write_bytes(path, data):
        if folder is None or Path(folder) in path.parents:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(path, data)

    monkeypatch.setattr(Path, "write_bytes", write_bytes)


def test_a_cache_folder_that_cannot_take_the_images_falls_back_to_a_temporary_folder(tmp_path, monkeypatch, capsys):
    path = write_bin(tmp_path / "set.bin", small_set(10))
    cache = tmp_path / "cache"
    refuse_writes_under(monkeypatch, cache)
    pairs = load_bin(path, cache)
    assert cache not in pairs.root.parents and all((pairs.root / name).is_file() for name in pairs.images)
    assert (f"crop cache {cache}: cannot write there (No space left on device); unpacking set.bin into a temporary "
            "folder") in capsys.readouterr().err
    assert list(cache.iterdir()) == []  # nothing half-unpacked left in the cache


def test_a_temporary_folder_that_cannot_take_them_either_is_one_line_and_removed(tmp_path, monkeypatch):
    path = write_bin(tmp_path / "set.bin", small_set(10))
    refuse_writes_under(monkeypatch, None)
    with pytest.raises(LrbenchError) as caught:
        load_bin(path, tmp_path / "cache")
    folder, _, reason = one_line(caught).partition(": ")
    assert Path(folder).name.startswith("lrbench-bin-") and reason == "cannot write it (No space left on device)"
    assert not Path(folder).exists()


def test_landmarks_for_a_bin_are_refused_as_it_holds_aligned_crops(tmp_path):
    path = write_bin(tmp_path / "set.bin", small_set(10))
    settings = EvalSettings(backbone="lbp", data=tmp_path, protocol=str(path), landmarks=tmp_path / "lm.txt",
                            workers=1, show_progress="off")
    with pytest.raises(UsageError) as caught:
        evaluate(settings)
    assert one_line(caught) == f"--landmarks {tmp_path / 'lm.txt'}: {path} holds aligned crops, which need no landmarks"


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_numpy_boolean_issame_arrays_are_read_at_any_pickle_protocol(tmp_path, protocol):
    images, issame = small_set(10)
    path = write_bin(tmp_path / "set.bin", (images, np.asarray(issame)), protocol)
    assert read_bin(path)[1].tolist() == issame


def test_numpy_boolean_scalars_in_a_list_are_read(tmp_path):
    images, issame = small_set(10)
    path = write_bin(tmp_path / "set.bin", (images, [np.bool_(v) for v in issame]), 2)
    assert read_bin(path)[1].tolist() == issame


def test_a_python2_pickle_as_insightface_wrote_its_files_is_read(tmp_path):
    images, issame = small_set(10)
    body = b"".join(b"T" + len(image).to_bytes(4, "little") + image for image in images)  # BINSTRING: py2 str
    flags = b"".join(b"\x88" if value else b"\x89" for value in issame)  # NEWTRUE / NEWFALSE
    path = tmp_path / "py2.bin"
    path.write_bytes(b"\x80\x02](" + body + b"e](" + flags + b"e\x86.")
    assert read_bin(path)[0] == images and read_bin(path)[1].tolist() == issame


def test_python3_protocol_2_bytes_are_read(tmp_path):
    path = write_bin(tmp_path / "set.bin", small_set(10), 2)  # bytes pickled as _codecs.encode(text, 'latin1')
    assert read_bin(path)[0] == small_set(10)[0]


# what is refused


class RunsCommand:
    def __init__(self, target: Path):
        self.target = target

    def __reduce__(self):
        return os.system, (f"touch {self.target}",)


class Evals:
    def __init__(self, target: Path):
        self.target = target

    def __reduce__(self):
        return builtins.eval, (f"open({str(self.target)!r}, 'w')",)


class Arbitrary:
    pass


@pytest.mark.parametrize(
    ("make", "asks_for"),
    [(RunsCommand, r"posix\.system"), (Evals, r"builtins\.eval"), (lambda target: Arbitrary(), r"\w+\.Arbitrary")],
)
def test_a_bin_that_calls_anything_is_refused_and_nothing_runs(tmp_path, make, asks_for):
    target = tmp_path / "pwned"
    images, issame = small_set(10)
    path = write_bin(tmp_path / "evil.bin", (images, [make(target), *issame[1:]]))
    with pytest.raises(DataError) as caught:
        load_bin(path, tmp_path / "cache")
    assert not target.exists()
    assert re.fullmatch(
        rf"{re.escape(str(path))}: refused: the file asks for {asks_for}; a \.bin holds only bytes, lists, tuples, "
        r"booleans and numpy boolean arrays, and nothing in it was run",
        one_line(caught),
    )
    assert not (tmp_path / "cache").exists()


def test_the_crafted_payload_is_live_under_plain_pickle(tmp_path):
    target = tmp_path / "pwned"
    pickle.loads(pickle.dumps(RunsCommand(target)))  # what insightface's own loader would do with it
    assert target.exists()


class RawMemoryArray:
    def __reduce__(self):
        return np.ndarray, ((1,), "O", b"\x00" * 8)  # an object array over raw bytes: pointers from the file


def test_numpy_ndarray_called_directly_is_refused(tmp_path):
    images, issame = small_set(10)
    path = write_bin(tmp_path / "raw.bin", (images, RawMemoryArray()))
    with pytest.raises(DataError, match=r"raw\.bin: refused: a call of numpy\.ndarray \(arrays come only from "):
        read_bin(path)


def test_numpy_arrays_of_anything_but_booleans_are_refused(tmp_path):
    images, _ = small_set(10)
    path = write_bin(tmp_path / "ints.bin", (images, np.arange(10) % 2), 2)
    with pytest.raises(DataError, match=r"ints\.bin: refused: numpy\.dtype\('i8'\): a \.bin's arrays must be "):
        read_bin(path)


def test_a_truncated_bin_is_one_line(tmp_path):
    whole = pickle.dumps(small_set(10), protocol=4)
    path = tmp_path / "cut.bin"
    path.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(DataError) as caught:
        load_bin(path, tmp_path / "cache")
    assert one_line(caught) == f"{path}: truncated: the file ends inside its pickle (an incomplete download?)"


@pytest.mark.parametrize("opcode", [b"\x8e", b"\x8d", b"\x96"])  # BINBYTES8, BINUNICODE8, BYTEARRAY8
def test_a_bin_claiming_more_bytes_than_the_file_holds_is_refused_before_anything_is_allocated(tmp_path, opcode):
    path = tmp_path / "huge.bin"
    path.write_bytes(b"\x80\x05" + opcode + struct.pack("<Q", 10**12) + b"not a terabyte")
    with pytest.raises(DataError) as caught:
        read_bin(path)
    assert one_line(caught) == (f"{path}: at byte 11 its pickle claims an object of 1,000,000,000,000 bytes, but the "
                                "whole file holds 25 bytes; a damaged or hostile .bin")


def test_bytes_after_the_pickle_are_refused(tmp_path):
    path = tmp_path / "tail.bin"
    path.write_bytes(pickle.dumps(small_set(10), protocol=4) + b"junk")
    with pytest.raises(DataError, match=r"tail\.bin: 4 bytes after the end of its pickle; not a \.bin file$"):
        read_bin(path)


def test_images_not_twice_the_pairs_are_refused(tmp_path):
    images, issame = small_set(10)
    path = write_bin(tmp_path / "odd.bin", (images[:-1], issame))
    with pytest.raises(DataError) as caught:
        read_bin(path)
    assert one_line(caught) == f"{path}: 19 images for 10 pairs; a .bin holds 2 images per pair"


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ({"images": 1}, "expected a pair (images, issame), got dict"),
        ((["x"] * 20, [True] * 10), "image 0 is str, not encoded image bytes"),
        (([b"x"] * 20, [1] * 10), "issame entry 0 is int, not a boolean"),
        (([b"x"] * 8, [True] * 4), "4 pairs; a .bin needs at least 10 (one per fold)"),
    ],
)
def test_content_of_the_wrong_shape_is_refused_naming_it(tmp_path, payload, message):
    path = write_bin(tmp_path / "shape.bin", payload)
    with pytest.raises(DataError) as caught:
        read_bin(path)
    assert one_line(caught) == f"{path}: {message}"


def test_bytes_that_are_no_image_are_named_by_their_place_and_nothing_is_cached(tmp_path):
    images, issame = small_set(10)
    images[3] = b"not an image"
    path = write_bin(tmp_path / "bad.bin", (images, issame))
    with pytest.raises(DataError) as caught:
        load_bin(path, tmp_path / "cache")
    assert one_line(caught).startswith(f"{path}: image 3 (pair 2, second): not a decodable image (")
    assert not any((tmp_path / "cache").iterdir())  # the half-unpacked folder is gone


def test_a_missing_bin_and_a_pairs_option_are_usage_errors(tmp_path):
    runner = CliRunner()
    result = runner.invoke(cli, ["run", "-b", "lbp", "--protocol", "none.bin", "--data", str(tmp_path), "-q"])
    assert result.exit_code == 2 and result.stderr.splitlines() == [
        f"Error: --protocol none.bin: no such file or in --data {tmp_path}"
    ]
    path = write_bin(tmp_path / "set.bin", small_set(10))
    from lrbench.data.binsets import bin_protocol

    with pytest.raises(UsageError, match=r"^--pairs p\.txt: .*set\.bin holds its own pairs; leave out --pairs$"):
        bin_protocol(str(path), tmp_path / "cache").load(tmp_path, Path("p.txt"))


# lrbench bin make and the round trip


class ArcCells(torch.nn.Module):
    """A tiny backbone on the ArcFace 112×112 crop: the mean colour of a 4×4 grid of cells."""

    def forward(self, x):
        return torch.nn.functional.adaptive_avg_pool2d(x, 4).flatten(1)


class ArcCellsPlugin:
    @hookimpl
    def register_backbones(self, register):
        register(BackboneSpec("arc-cells", lambda weights: ArcCells(), InputSpec(ARCFACE_112x112), 48))


@pytest.fixture
def made_bin(synth_data, tmp_path):
    out = tmp_path / "synth.bin"
    result = CliRunner().invoke(cli, ["bin", "make", "--data", str(synth_data.lfw_root), "--out", str(out), "-q",
                                      "--workers", "1"])
    assert result.exit_code == 0, result.output
    return out


def test_bin_make_writes_pairs_in_fold_order_as_a_pickle_insightface_reads(made_bin, synth_data):
    images, issame = pickle.loads(made_bin.read_bytes())  # what insightface's load_bin does
    from lrbench.data.pairs import parse_lfw_pairs

    records = parse_lfw_pairs(synth_data.pairs)
    assert issame == [r.same for r in sorted(records, key=lambda r: r.fold)]
    assert len(images) == 2 * len(issame)
    assert {Image.open(io.BytesIO(image)).size for image in images} == {(112, 112)}
    assert images[0].startswith(b"\x89PNG")


def test_a_made_bin_runs_to_exactly_the_accuracy_of_the_direct_run(plugin_manager, made_bin, synth_data, tmp_path):
    plugin_manager.register_for_test(ArcCellsPlugin(), name="arc-cells-plugin")
    common = {"backbone": "arc-cells", "dfs": "1,4", "workers": 1, "show_progress": "off"}
    direct = evaluate(EvalSettings(data=synth_data.lfw_root, **common))
    from_bin = evaluate(EvalSettings(data=tmp_path, protocol=str(made_bin), **common))
    for column in ("accuracy_mean", "auc", "eer"):
        assert from_bin.results[column].tolist() == direct.results[column].tolist()
    manifest = from_bin.manifest
    assert manifest["data"]["pairs_sha256"] == sha256_file(made_bin) and manifest["settings"]["aligned"] is True
    assert manifest["protocol"] == "synth.bin" and manifest["data"]["folds"] == 10


def test_bin_make_overwrite_never_replaces_a_file_that_is_not_a_bin(synth_data, tmp_path):
    out = tmp_path / "faces.bin"
    out.write_text("my own notes")
    result = CliRunner().invoke(cli, ["bin", "make", "--data", str(synth_data.lfw_root), "--out", str(out),
                                      "--overwrite"])
    assert result.exit_code == 2 and result.stderr.splitlines() == [
        f"Error: --out {out}: already exists and is not a .bin verification set, so lrbench will not replace it; "
        "choose another file"
    ]
    assert out.read_text() == "my own notes"


def test_bin_make_keeps_an_existing_file_without_overwrite(made_bin, synth_data):
    before = made_bin.read_bytes()
    result = CliRunner().invoke(cli, ["bin", "make", "--data", str(synth_data.lfw_root), "--out", str(made_bin)])
    assert result.exit_code == 2 and result.stderr.splitlines() == [
        f"Error: --out {made_bin}: already exists; choose another file or pass --overwrite"
    ]
    assert made_bin.read_bytes() == before


# CALFW / CPLFW's native pairs format and the XQLFW, CALFW, CPLFW definitions


def name_label_text(same_labels=None, different=10) -> str:
    """10 same-person pairs (labels as given, CALFW-style person numbers by default), then 10 different."""
    lines = []
    for i, label in enumerate(same_labels or range(101, 111)):
        lines += [f"P{i}_0001.jpg {label}", f"P{i}_0002.jpg {label}"]
    for i in range(different):
        lines += [f"P{i}_0001.jpg 0", f"P{(i + 1) % 10}_0002.jpg 0"]
    return "\n".join(lines) + "\n"


def test_name_label_pairs_put_the_kth_tenth_of_each_half_in_fold_k(tmp_path):
    from lrbench.data.pairs import parse_name_label_pairs

    path = tmp_path / "pairs_CALFW.txt"
    path.write_text(name_label_text())
    records = parse_name_label_pairs(path)
    assert [r.same for r in records] == [True] * 10 + [False] * 10
    assert [r.fold for r in records] == list(range(10)) * 2
    assert records[0].names == ("P0_0001.jpg", "P0_0002.jpg") and records[0].line == 1
    assert records[10].names == ("P0_0001.jpg", "P1_0002.jpg") and records[10].line == 21


def test_cplfw_style_labels_of_1_are_same_person_pairs(tmp_path):
    from lrbench.data.pairs import parse_name_label_pairs

    path = tmp_path / "pairs_CPLFW.txt"
    path.write_text(name_label_text([1] * 10))
    assert sum(r.same for r in parse_name_label_pairs(path)) == 10


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda lines: lines[:-1], "39 lines; this format has two lines per pair"),
        (lambda lines: lines[:-2], "19 pairs; this format needs 10 folds × 2 × N pairs (all same-person pairs, then "
                                   "as many different-person pairs)"),
        (lambda lines: [lines[0], "P0_0002.jpg 0", *lines[2:]], ":2: label 0 but 101 on line 1: a pair's two lines "
                                                                "are both 0 (different people) or both non-zero"),
        (lambda lines: [*lines[:18], *lines[20:22], *lines[18:20], *lines[22:]],
         ":19: a different-person pair at pair 10; this format lists 10 same-person pairs, then 10 different-person"),
        (lambda lines: ["P0_0001.jpg 1 x", *lines[1:]], ":1: expected 'file label' (an image file and a whole "
                                                        "number), got 3 fields"),
        (lambda lines: ["P0_0001.jpg yes", *lines[1:]], ":1: label must be a whole number (0: different people), "
                                                        "got 'yes'"),
        (lambda lines: ["../P0_0001.jpg 1", *lines[1:]], ":1: name '../P0_0001.jpg' would reach outside the data"),
    ],
)
def test_name_label_pairs_files_that_break_the_format_name_the_line(tmp_path, edit, message):
    from lrbench.data.pairs import parse_name_label_pairs

    path = tmp_path / "pairs.txt"
    path.write_text("\n".join(edit(name_label_text().splitlines())) + "\n")
    with pytest.raises(DataError) as caught:
        parse_name_label_pairs(path)
    assert one_line(caught).startswith(f"{path}{'' if message.startswith(':') else ': '}{message}")


def test_calfw_runs_on_its_published_layout_as_aligned_crops(plugin_manager, tmp_path):
    plugin_manager.register_for_test(ArcCellsPlugin(), name="arc-cells-plugin")
    data = tmp_path / "calfw"
    (data / "aligned images").mkdir(parents=True)
    (data / "pairs_CALFW.txt").write_text(name_label_text())
    rng = np.random.default_rng(0)
    for i in range(10):
        for number in (1, 2):
            pixels = rng.integers(0, 256, (112, 112, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(data / "aligned images" / f"P{i}_000{number}.jpg")
    from lrbench import registry

    pairs = registry.protocol("calfw").load(data, None)
    assert pairs.aligned and pairs.root == data / "aligned images" and len(pairs.images) == 20
    run = evaluate(EvalSettings(backbone="arc-cells", data=data, protocol="calfw", workers=1, show_progress="off"))
    assert run.manifest["settings"]["aligned"] is True and run.manifest["data"]["pairs"] == 20


def test_xqlfw_is_lfw_format_at_df_1_and_its_aligned_release_needs_no_landmarks():
    from lrbench import registry

    xqlfw, aligned = registry.protocol("xqlfw"), registry.protocol("xqlfw-aligned")
    assert "run at DF 1" in xqlfw.description and "run at DF 1" in aligned.description
    from lrbench.data.pairs import ProtocolDefinition

    toml = Path(__file__).resolve().parents[1] / "protocols"
    definition = ProtocolDefinition.from_toml(toml / "xqlfw-aligned.toml")
    assert (definition.pairs_file, definition.pairs_format, definition.aligned) == ("xqlfw_pairs.txt", "lfw", True)
    assert not ProtocolDefinition.from_toml(toml / "xqlfw.toml").aligned


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        ('pairs_format = "csv"', 'pairs_format must be "lfw" or "name-label", got \'csv\''),
        ('pairs_format = "name-label"\npath_pattern = "{name}_{number}.jpg"',
         "path_pattern '{name}_{number}.jpg': must use only {name}"),
        ('aligned = "yes"', "aligned must be true or false, got 'yes'"),
    ],
)
def test_protocol_files_with_a_bad_format_or_aligned_key_are_refused(tmp_path, lines, message):
    from lrbench.data.pairs import ProtocolDefinition

    path = tmp_path / "p.toml"
    path.write_text(f'name = "p"\ndescription = ""\n{lines}\n')
    with pytest.raises(DataError) as caught:
        ProtocolDefinition.from_toml(path)
    assert one_line(caught) == f"{path}: {message}"


def test_lrbench_run_finds_a_bin_inside_data_and_needs_no_landmarks(made_bin, tmp_path):
    out = tmp_path / "run"
    result = CliRunner().invoke(cli, ["run", "-b", "lbp", "--protocol", made_bin.name, "--data", str(made_bin.parent),
                                      "--df", "1", "--out", str(out), "--workers", "1", "-q"])
    assert result.exit_code == 0, result.output
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["data"]["pairs_file"] == made_bin.name and manifest["settings"]["aligned"] is True  # under --data


def test_lrbench_run_on_a_bin_path_needs_no_data_folder(made_bin, tmp_path):
    out = tmp_path / "run"
    result = CliRunner().invoke(cli, ["run", "-b", "lbp", "--protocol", str(made_bin), "--df", "1", "--out", str(out),
                                      "--workers", "1", "-q"])
    assert result.exit_code == 0, result.output
    assert json.loads((out / "manifest.json").read_text())["data"]["pairs_file"] == made_bin.name  # its name alone


def test_other_protocols_still_need_data(tmp_path):
    result = CliRunner().invoke(cli, ["run", "-b", "lbp", "--out", str(tmp_path / "run")])
    assert result.exit_code == 2
    assert result.stderr.strip() == (
        "Error: --data: needed (the folder holding the images), unless --protocol is a .bin file"
    )
    assert not (tmp_path / "run").exists()
