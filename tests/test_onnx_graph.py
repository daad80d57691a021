"""Reading how an ONNX graph begins (its first node, the normalisation its first nodes apply) without ``onnx``.

The graphs are written with the onnx package's helper API, which stores constants in the layouts exporters
use: raw bytes, listed floats, float16 bit patterns, ``Constant`` nodes.
"""

import numpy as np
import pytest
from lrbench_plugins.onnx_graph import in_unit_range, input_stage

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper  # noqa: E402


def save(tmp_path, nodes, initializers=(), first_input="x"):
    """A graph taking ``x`` (1×3×4×4) through ``nodes`` to a 1×3 output ``y`` (a ReduceMean is appended)."""
    graph = helper.make_graph(
        [*nodes, helper.make_node("ReduceMean", [first_input], ["y"], axes=[2, 3], keepdims=0)], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 4, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])], initializer=list(initializers),
    )
    path = tmp_path / "graph.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), str(path))
    onnx.checker.check_model(str(path))
    return path


def per_channel(name, values, raw=False, data_type=TensorProto.FLOAT):
    values = np.asarray(values, np.float16 if data_type == TensorProto.FLOAT16 else np.float32)
    if raw:
        return helper.make_tensor(name, data_type, [1, 3, 1, 1], values.tobytes(), raw=True)
    return helper.make_tensor(name, data_type, [1, 3, 1, 1], values.tolist())  # float16: stored as bit patterns


def test_sub_then_mul_with_a_constant_node_and_a_listed_initializer(tmp_path):
    nodes = [helper.make_node("Constant", [], ["c"], value_float=127.5), helper.make_node("Sub", ["x", "c"], ["a"]),
             helper.make_node("Mul", ["k", "a"], ["b"])]  # the constant first: k * (x − c)
    stage = input_stage(save(tmp_path, nodes, [per_channel("k", [1 / 128] * 3)], "b"), "x")
    assert stage.first_op == "Sub"
    assert stage.normalisation.nodes == ("Sub", "Mul")
    assert np.allclose(stage.normalisation.mean, 127.5) and np.allclose(stage.normalisation.std, 128)
    assert stage.normalisation.describe() == "Sub, Mul: (x − 127.5) / 128"


@pytest.mark.parametrize("data_type", [TensorProto.FLOAT, TensorProto.FLOAT16])
@pytest.mark.parametrize("raw", [True, False])
def test_per_channel_constants_in_every_layout(tmp_path, raw, data_type):
    mean, std = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
    nodes = [helper.make_node("Sub", ["x", "m"], ["a"]), helper.make_node("Div", ["a", "s"], ["b"])]
    constants = [per_channel("m", mean, raw, data_type), per_channel("s", std, raw, data_type)]
    found = input_stage(save(tmp_path, nodes, constants, "b"), "x").normalisation
    assert np.allclose(found.mean, mean, atol=1e-3) and np.allclose(found.std, std, atol=1e-3)
    assert found.in_unit_range


def test_add_of_a_negative_and_a_constant_minus_the_input(tmp_path):
    nodes = [helper.make_node("Constant", [], ["c"], value_floats=[-100.0]), helper.make_node("Add", ["x", "c"], ["a"]),
             helper.make_node("Constant", [], ["z"], value_float=0.0), helper.make_node("Sub", ["z", "a"], ["b"])]
    found = input_stage(save(tmp_path, nodes, first_input="b"), "x").normalisation  # 0 − (x − 100) = (x − 100) / −1
    assert np.allclose(found.mean, 100) and np.allclose(found.std, -1)


@pytest.mark.parametrize(
    "nodes, initializers",
    [
        ([helper.make_node("Mul", ["x", "x"], ["b"])], []),  # no constant operand
        ([helper.make_node("Div", ["k", "x"], ["b"])], [per_channel("k", [2.0] * 3)]),  # k / x is not affine
        ([helper.make_node("Sub", ["x", "image"], ["b"])],  # a mean image: not per channel, not followed
         [helper.make_tensor("image", TensorProto.FLOAT, [1, 3, 4, 4], [1.0] * 48)]),
        ([helper.make_node("Relu", ["x"], ["b"])], []),
    ],
)
def test_a_graph_whose_first_node_is_no_per_channel_normalisation_has_none(tmp_path, nodes, initializers):
    stage = input_stage(save(tmp_path, nodes, initializers, "b"), "x")
    assert stage.normalisation is None and stage.first_op == nodes[0].op_type


def test_the_chain_stops_where_the_input_branches(tmp_path):
    nodes = [helper.make_node("Constant", [], ["c"], value_float=127.5), helper.make_node("Sub", ["x", "c"], ["a"]),
             helper.make_node("Mul", ["a", "c"], ["b"]), helper.make_node("Add", ["a", "b"], ["d"])]  # a feeds two
    found = input_stage(save(tmp_path, nodes, first_input="d"), "x").normalisation
    assert found.nodes == ("Sub",) and np.allclose(found.mean, 127.5) and np.allclose(found.std, 1)


def test_a_file_that_is_not_a_protobuf_is_a_value_error(tmp_path):
    path = tmp_path / "junk.onnx"
    path.write_bytes(b"\x0f" * 64)  # wire type 7 does not exist
    with pytest.raises(ValueError, match="protobuf wire type 7"):
        input_stage(path, "x")


@pytest.mark.parametrize(
    "mean, std, expected",
    [((0.485, 0.456, 0.406), (0.229, 0.224, 0.225), True), ((0.5,) * 3, (0.5,) * 3, True),
     ((0.0,) * 3, (1.0,) * 3, False), ((127.5,) * 3, (128.0,) * 3, False), ((0.0,) * 3, (128.0,) * 3, False),
     ((122.8, 117.0, 104.3), (1.0,) * 3, False)],
)
def test_unit_range_means_every_mean_and_std_at_most_1_but_not_plain_pixels(mean, std, expected):
    assert in_unit_range(mean, std) is expected
