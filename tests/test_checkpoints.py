"""The checkpoint readers plugins build on: wrapper keys, loaded mappings, errors that name the source."""

import io
import re
import struct
import zipfile

import pytest
import torch

from lrbench import DataError, load_weights, read_state_dict


def _net() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.ReLU(), torch.nn.Linear(3, 2))


def test_a_named_wrapper_key_is_unwrapped(tmp_path):
    net = _net()
    path = tmp_path / "ckpt.pth"
    torch.save({"epoch": 3, "net_state_dict": {f"module.{k}": v for k, v in net.state_dict().items()}}, path)
    state = read_state_dict(path, key="net_state_dict")
    assert state.keys() == net.state_dict().keys()
    assert torch.equal(state["0.weight"], net.state_dict()["0.weight"])


def test_candidate_keys_are_tried_in_order(tmp_path):
    net = _net()
    path = tmp_path / "ckpt.pth"
    torch.save({"ema": net.state_dict(), "optimizer": {}}, path)
    assert read_state_dict(path, key=["teacher", "ema"]).keys() == net.state_dict().keys()


def test_a_missing_wrapper_key_names_the_file_and_the_keys_present(tmp_path):
    path = tmp_path / "ckpt.pth"
    torch.save({"epoch": 3, "model_ema": _net().state_dict()}, path)
    message = r"ckpt\.pth: no 'net_state_dict' entry holding weights; keys: epoch, model_ema"
    with pytest.raises(DataError, match=message):
        read_state_dict(path, key="net_state_dict")


def test_an_already_loaded_mapping_is_loaded_with_the_same_checks():
    source, target = _net(), torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.ReLU(), torch.nn.Linear(3, 2))
    layout = load_weights(target, {"weights": {f"_orig_mod.{k}": v for k, v in source.state_dict().items()}},
                          key="weights")
    assert layout == "native"
    assert torch.equal(target[2].bias, source[2].bias)
    assert not hasattr(target, "weights_file")  # no file: nothing for the manifest to hash


def test_a_mismatched_mapping_shows_the_mismatch_table():
    state = _net().state_dict()
    state["2.weight"] = torch.zeros(5, 3)
    with pytest.raises(DataError, match=r"^the given state dict: checkpoint fits none") as caught:
        load_weights(_net(), state)
    assert "mis-shaped  2.weight: model [2, 3], checkpoint [5, 3]" in caught.value.details


def _saved(tmp_path) -> tuple:
    path = tmp_path / "model.pth"
    torch.save(_net().state_dict(), path)
    return path, path.read_bytes()


@pytest.mark.parametrize("kept", [0.5, 0.99])
def test_a_truncated_checkpoint_is_called_truncated_not_foreign(tmp_path, kept):
    path, whole = _saved(tmp_path)
    path.write_bytes(whole[: int(len(whole) * kept)])
    with pytest.raises(DataError) as caught:
        read_state_dict(path)
    assert str(caught.value).startswith(f"{path}: truncated or damaged checkpoint: a zip archive (torch.save's format)")
    assert "not a PyTorch checkpoint" not in str(caught.value)


def _member_start(whole: bytes, name: str) -> tuple[int, int]:
    """Where a zip member's local header and its data begin (the header's fixed 30 bytes, name and extra field)."""
    with zipfile.ZipFile(io.BytesIO(whole)) as archive:
        [entry] = [info for info in archive.infolist() if info.filename.endswith("/" + name)]
    header = entry.header_offset
    name_length, extra_length = struct.unpack("<HH", whole[header + 26 : header + 30])
    return header, header + 30 + name_length + extra_length


@pytest.mark.parametrize(
    "damage, reason",
    [
        ("opcode", r"Unsupported operand 120"),  # the pickle's opcodes: damage, not objects that run code
        ("header", r"PytorchStreamReader failed reading file data/0: invalid header or archive is corrupted"),
    ],
)
def test_a_checkpoint_damaged_inside_says_so_in_one_sentence(tmp_path, damage, reason):
    path, whole = _saved(tmp_path)
    # after the pickle's 2 bytes of PROTO, or the local header of a tensor's member
    start = _member_start(whole, "data.pkl")[1] + 2 if damage == "opcode" else _member_start(whole, "data/0")[0]
    damaged = bytearray(whole)
    damaged[start : start + 4] = b"xxxx"  # 'x' (120) is no pickle opcode; the zip's directory stays intact
    path.write_bytes(bytes(damaged))
    with pytest.raises(DataError) as caught:
        read_state_dict(path)
    # one sentence: torch's advice after it (and any "weights_only=False" in it) is left out
    assert re.fullmatch(rf"{re.escape(str(path))}: truncated or damaged checkpoint \({reason}\)", str(caught.value))


def test_a_truncated_legacy_pickle_checkpoint_says_truncated(tmp_path):
    path = tmp_path / "old.pth"
    torch.save(_net().state_dict(), path, _use_new_zipfile_serialization=False)
    path.write_bytes(path.read_bytes()[:40])
    with pytest.raises(DataError, match=rf"^{path}: truncated or damaged checkpoint \("):
        read_state_dict(path)


def test_a_zip_archive_without_torch_saves_pickle_is_not_a_checkpoint(tmp_path):
    path = tmp_path / "weights.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("weights/readme.txt", "the weights are elsewhere")
    with pytest.raises(DataError, match=rf"^{path}: a zip archive but not a PyTorch checkpoint \(no data\.pkl"):
        read_state_dict(path)


class _RunsCode:
    """What a malicious checkpoint holds: unpickling it calls a function of the attacker's choosing."""

    def __reduce__(self):
        return (print, ("this ran while loading",))


@pytest.mark.parametrize("zipped", [True, False])
def test_a_checkpoint_holding_code_is_refused_without_advice_to_run_it(tmp_path, capsys, zipped):
    path = tmp_path / "evil.pth"
    torch.save({"state_dict": _net().state_dict(), "payload": _RunsCode()}, path,
               _use_new_zipfile_serialization=zipped)
    with pytest.raises(DataError) as caught:
        read_state_dict(path)
    message = str(caught.value)
    assert re.fullmatch(rf"{re.escape(str(path))}: holds Python objects \((builtins\.)?print\) that loading would have "
                        "to run as code; lrbench loads tensors only and will not execute them", message)
    assert "weights_only" not in message and "\n" not in message
    assert "this ran while loading" not in capsys.readouterr().out


def test_resuming_from_a_truncated_training_checkpoint_says_truncated(tmp_path):
    from lrbench.training.checkpoint import load_checkpoint

    path, whole = _saved(tmp_path)
    path.write_bytes(whole[:-100])
    with pytest.raises(DataError, match=rf"^{path}: truncated or damaged checkpoint: a zip archive"):
        load_checkpoint(path)
