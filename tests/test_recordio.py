"""insightface RecordIO packs read without MXNet, and trained on.

The packs here are written by this file's own writer, from the format as dmlc-core's ``recordio.cc`` and
MXNet's ``recordio.py`` define it (nothing from lrbench): per record a uint32 marker 0xced7230a, a uint32 with
the length in its low 29 bits and a continuation flag above, the data split where it holds the marker at a
4-byte boundary, zero padding to 4 bytes; an IRHeader ``<IfQQ`` and its float labels; ``key\\toffset`` lines in
the index; record 0 a header giving the identity records' range, each identity record its images' range.
"""

import io
import json
import os
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from cli_helpers import invoke
from PIL import Image

from lrbench import ARCFACE_112x112, DataError, SPHEREFACE_96x112, UsageError
from lrbench.data.align import TemplateConversion
from lrbench.data.crops import load_crops
from lrbench.data.landmarks import landmarks_for
from lrbench.data.recordio import PackCrops, RecordPack
from lrbench.training import CropBatches, scan_folder
from lrbench.training.data import pack_digest

MARKER = struct.pack("<I", 0xCED7230A)


def encoded_record(data: bytes) -> bytes:
    """One record as dmlc's RecordIOWriter::WriteRecord writes it."""
    parts, start = [], 0
    for i in range(0, len(data) // 4 * 4, 4):
        if data[i : i + 4] == MARKER:
            parts.append(data[start:i])
            start = i + 4
    parts.append(data[start:])
    out = bytearray()
    for n, part in enumerate(parts):
        flag = 0 if len(parts) == 1 else 1 if n == 0 else 3 if n == len(parts) - 1 else 2
        out += MARKER + struct.pack("<I", flag << 29 | len(part)) + part
    return bytes(out + b"\0" * (-len(data) % 4))


def ir_record(label: float, key: int, payload: bytes = b"", labels=()) -> bytes:
    """mxnet.recordio.pack: IRHeader(flag = number of labels, label, id, id2), the labels, the payload."""
    return struct.pack("<IfQQ", len(labels), label, key, 0) + struct.pack(f"<{len(labels)}f", *labels) + payload


def write_pack(folder: Path, people: list[list[bytes]], header: bool = True) -> Path:
    """train.rec and train.idx as insightface's face2rec lays them out: header, images by identity, identities."""
    folder.mkdir(parents=True, exist_ok=True)
    records, key = [], 1 if header else 0
    count = sum(len(images) for images in people)
    start = count + 1
    if header:
        records.append((0, ir_record(0.0, 0, labels=(start, start + len(people)))))
    ranges = []
    for identity, images in enumerate(people):
        first = key
        for payload in images:
            records.append((key, ir_record(float(identity), key, payload)))
            key += 1
        ranges.append((first, key))
    if header:
        records += [(start + k, ir_record(0.0, start + k, labels=r)) for k, r in enumerate(ranges)]
    with open(folder / "train.rec", "wb") as rec, open(folder / "train.idx", "w") as idx:
        for key, data in records:
            idx.write(f"{key}\t{rec.tell()}\n")
            rec.write(encoded_record(data))
    return folder / "train.rec"


def jpeg(seed: int, size=(112, 112)) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def offsets(rec: Path) -> dict[int, int]:
    lines = rec.with_suffix(".idx").read_text().split()
    return {int(k): int(v) for k, v in zip(lines[0::2], lines[1::2])}


@pytest.fixture
def small_pack(tmp_path):
    """3 identities with 2, 3 and 1 images."""
    people = [[jpeg(10 * p + i) for i in range(n)] for p, n in enumerate((2, 3, 1))]
    return write_pack(tmp_path / "pack", people), people


def test_identities_and_labels_come_from_the_header_and_identity_records(small_pack):
    rec, people = small_pack
    pack = RecordPack(rec)
    assert pack.identities == 3 and pack.has_header
    assert pack.images.tolist() == [1, 2, 3, 4, 5, 6]
    assert pack.labels.tolist() == [0, 0, 1, 1, 1, 2]
    assert pack.read(3).payload == people[1][0]


def test_images_decode_and_reach_other_templates_by_the_templates_similarity(small_pack):
    rec, people = small_pack
    pack = RecordPack(rec)
    original = Image.open(io.BytesIO(people[1][2]))
    assert np.array_equal(PackCrops(pack, ARCFACE_112x112)[4], np.asarray(original.convert("RGB")))
    converted = PackCrops(pack, SPHEREFACE_96x112)[np.array([4, 0])]
    expected = TemplateConversion(ARCFACE_112x112, SPHEREFACE_96x112).apply(original)
    assert converted.shape == (2, 112, 96, 3) and np.array_equal(converted[0], expected)


def test_crops_decode_in_forked_data_loader_workers(small_pack):
    rec, _ = small_pack
    crops = PackCrops(RecordPack(rec), ARCFACE_112x112)
    here = crops[np.arange(6)]  # the pool and the open file exist before the fork
    loader = torch.utils.data.DataLoader(CropBatches({"crops": crops}, np.zeros(6, dtype=np.int64)),
                                         batch_sampler=[[(k, False, 1) for k in range(6)]], collate_fn=lambda b: b,
                                         num_workers=1, multiprocessing_context="fork", timeout=20)
    (batch,) = list(loader)
    assert np.array_equal(batch["crops"].numpy(), here)


def test_data_holding_the_marker_is_written_in_parts_and_read_back_whole(tmp_path):
    awkward = b"abcd" + MARKER + b"efgh" + MARKER + MARKER + b"ij"  # at payload offsets 4, 12, 16: 4-aligned
    rec = write_pack(tmp_path / "pack", [[awkward, jpeg(1)]])
    # header, identity and JPEG records in one part each; the awkward one in four, its markers left out
    assert rec.read_bytes().count(MARKER) == 3 + 4
    pack = RecordPack(rec)
    assert pack.read(1).payload == awkward and pack.labels.tolist() == [0, 0]


def test_opening_reads_the_index_and_the_header_records_not_the_images(tmp_path, monkeypatch):
    rec = write_pack(tmp_path / "pack", [[b"x" * 40] * 500 for _ in range(4)])
    calls = []
    real = os.pread
    monkeypatch.setattr("lrbench.data.recordio.os.pread", lambda *args: calls.append(args) or real(*args))
    pack = RecordPack(rec)
    assert len(pack.images) == 2000 and pack.identities == 4
    assert len(calls) <= 2 * (1 + 4 + 1)  # header, identities, the last record: marker and data of each


def test_a_packs_digest_survives_a_copy_and_sees_an_edit_of_a_sampled_block(small_pack, tmp_path):
    rec, _ = small_pack
    copy = tmp_path / "copy"
    copy.mkdir()
    for path in (rec, rec.with_suffix(".idx")):
        (copy / path.name).write_bytes(path.read_bytes())  # new files, new dates
    os.utime(copy / rec.name, ns=(0, 0))
    first = pack_digest(RecordPack(rec))
    assert pack_digest(RecordPack(copy / rec.name)) == first
    payload = bytearray((copy / rec.name).read_bytes())
    payload[len(payload) // 2] ^= 1  # the same size, one bit
    (copy / rec.name).write_bytes(bytes(payload))
    assert pack_digest(RecordPack(copy / rec.name)) != first


def test_a_truncated_pack_is_refused_naming_the_first_record_it_lost(small_pack):
    rec, _ = small_pack
    where = offsets(rec)
    with open(rec, "r+b") as handle:
        handle.truncate(where[5] + 2)
    with pytest.raises(DataError, match=rf"record 5 \(byte {where[5]}\): the file ends .* truncated \(5 records"):
        RecordPack(rec)


def test_a_pack_cut_inside_its_last_record_is_refused_naming_it(small_pack):
    rec, _ = small_pack
    last = max(offsets(rec).items(), key=lambda item: item[1])
    with open(rec, "r+b") as handle:
        handle.truncate(last[1] + 12)
    with pytest.raises(DataError, match=rf"record {last[0]} \(byte {last[1]}\): .* the pack is truncated"):
        RecordPack(rec)


def test_a_damaged_record_is_refused_naming_it_when_read(small_pack):
    rec, _ = small_pack
    with open(rec, "r+b") as handle:
        handle.seek(offsets(rec)[4])
        handle.write(b"JUNK")
    pack = RecordPack(rec)
    with pytest.raises(DataError, match=r"train.rec: record 4 \(byte \d+\): no record marker"):
        PackCrops(pack, ARCFACE_112x112)[np.array([0, 3])]


def test_a_record_whose_length_runs_into_the_next_is_refused(small_pack):
    rec, _ = small_pack
    with open(rec, "r+b") as handle:
        handle.seek(offsets(rec)[2] + 4)
        handle.write(struct.pack("<I", 50_000))
    with pytest.raises(DataError, match=r"record 2 .* run into the next record"):
        RecordPack(rec).read(2)


def test_bytes_that_are_no_image_are_refused_naming_the_record(tmp_path):
    pack = RecordPack(write_pack(tmp_path / "pack", [[jpeg(1), b"not a jpeg at all"]]))
    with pytest.raises(DataError, match=r"record 2 \(byte \d+\): cannot decode its image"):
        pack.image(1)


def test_an_image_labelled_against_its_identity_record_is_refused(tmp_path):
    rec = write_pack(tmp_path / "pack", [[jpeg(1)], [jpeg(2)]])
    data = bytearray(rec.read_bytes())
    at = offsets(rec)[2] + 8 + 4  # the IRHeader's label of record 2
    data[at : at + 4] = struct.pack("<f", 7.0)
    rec.write_bytes(bytes(data))
    with pytest.raises(DataError, match=r"record 2 .* labelled 7, but identity 1's range holds it"):
        RecordPack(rec).image(1)


def test_identity_records_whose_ranges_overlap_are_refused(small_pack):
    rec, _ = small_pack
    data = bytearray(rec.read_bytes())
    at = offsets(rec)[8] + 8 + 24  # identity 1 (record 7 + 1): its two float labels after the IRHeader
    data[at : at + 8] = struct.pack("<2f", 2.0, 4.0)  # identity 0 holds images 1 and 2
    rec.write_bytes(bytes(data))
    with pytest.raises(DataError, match=r"record 8 \(byte \d+\): identity 1's image range \[2.0, 4.0\] is not a new"):
        RecordPack(rec)


def test_an_index_line_that_is_not_key_and_offset_is_refused_naming_it(small_pack):
    rec, _ = small_pack
    index = rec.with_suffix(".idx")
    lines = index.read_text().splitlines()
    lines[3] = "3\t12x"
    index.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=r"train.idx: line 4 \('3\\t12x'\)"):
        RecordPack(rec)


def test_an_index_giving_two_records_one_place_is_refused(small_pack):
    rec, _ = small_pack
    where = offsets(rec)
    where[1], where[2] = where[2], where[1]  # out of order: read through the sorted offsets
    where[4] = where[3]
    rec.with_suffix(".idx").write_text("".join(f"{k}\t{v}\n" for k, v in where.items()))
    with pytest.raises(DataError, match=r"train.idx: records 3 and 4 both start at byte"):
        RecordPack(rec)


def test_a_pack_without_its_index_is_a_usage_error(small_pack):
    rec, _ = small_pack
    rec.with_suffix(".idx").unlink()
    with pytest.raises(UsageError, match="train.idx is not beside it"):
        RecordPack(rec)


def test_a_pack_without_a_header_record_labels_images_by_their_own_headers(tmp_path):
    pack = RecordPack(write_pack(tmp_path / "pack", [[jpeg(1)], [jpeg(2), jpeg(3)]], header=False))
    assert not pack.has_header
    assert pack.images.tolist() == [0, 1, 2] and pack.labels.tolist() == [0, 1, 1] and pack.identities == 2


# -- training from a pack ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def faces(tmp_path_factory):
    """The synthetic training set as insightface packs it (aligned 112×112 ArcFace JPEGs), and a .bin to validate."""
    from lrbench.data.synth import synthesize

    data = synthesize(tmp_path_factory.mktemp("rec") / "data", seed=5, pairs_per_fold=4, people_per_fold=3,
                      images_per_person=3, train_identities=6, train_images_per_identity=4)
    folder = scan_folder(data.train_images)
    points = landmarks_for(folder.images, data.train_landmarks, data.train_images)
    crops, _ = load_crops(folder.root, folder.images, ARCFACE_112x112, points, cache_dir=None, show_progress=False)
    people = [[] for _ in folder.identities]
    for crop, label in zip(crops, folder.labels):
        buffer = io.BytesIO()
        Image.fromarray(crop).save(buffer, "JPEG", quality=95)
        people[label].append(buffer.getvalue())
    rec = write_pack(tmp_path_factory.mktemp("faces_synth_112x112"), people)
    lfw_bin = rec.parent / "lfw.bin"
    made = invoke("bin", "make", "--data", data.lfw_root, "--out", lfw_bin, "--quiet")
    assert made.exit_code == 0, made.output
    return rec, lfw_bin


def test_classify_trains_on_a_pack_and_validates_on_a_bin(faces, tmp_path):
    rec, lfw_bin = faces
    out = tmp_path / "run"
    result = invoke("train", "classify", "--data", rec, "--out", out, "--option", "depth=4", "--option", "width=0.125",
                    "--batch-size", 8, "--steps", 24, "--log-every", 4, "--val", lfw_bin, "--val-every", 24)
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["images"] == 24 and summary["identities"] == 6
    assert summary["data"]["format"] == "insightface RecordIO pack"
    assert summary["data"]["crops"]["crops"]["target_template"] == SPHEREFACE_96x112.name
    assert "24 images of 6 identities" in result.output
    rows = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [row["step"] for row in rows if "validation" in row] == [0, 24]
    assert summary["loss_last"] < summary["loss_first"]


def test_a_pack_refuses_landmark_options(faces, tmp_path):
    rec, _ = faces
    result = invoke("train", "classify", "--data", rec, "--out", tmp_path / "run", "--landmarks", rec)
    assert result.exit_code == 2 and "--landmarks: not with --data" in result.output


def test_a_bin_to_validate_on_must_exist(faces, tmp_path):
    rec, _ = faces
    result = invoke("train", "classify", "--data", rec, "--out", tmp_path / "run", "--val", tmp_path / "no.bin")
    assert result.exit_code == 2 and "no.bin: no such file" in result.output
