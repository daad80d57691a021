"""The checkpoint readers plugins build on: wrapper keys, loaded mappings, errors that name the source."""

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
