"""Real ONNX models built with the onnx library, each made to exercise one server behaviour."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = [helper.make_opsetid("", 17)]


def weights_model(path: Path, megabytes: float, seed: int = 0) -> Path:
    """A lookup table of ``megabytes`` of FP32 weights: input ``idx`` INT64 [-1], output [-1, 4]."""
    rows = int(megabytes * 1e6 / 16)
    weights = np.random.default_rng(seed).random((rows, 4), dtype=np.float32)
    graph = helper.make_graph(
        [helper.make_node("Gather", ["W", "idx"], ["y"])], "weights",
        [helper.make_tensor_value_info("idx", TensorProto.INT64, [None])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 4])],
        [numpy_helper.from_array(weights, "W")])
    onnx.save(helper.make_model(graph, opset_imports=OPSET), path)
    return path


def offset_model(path: Path, offset: float) -> Path:
    """``y = x + offset`` on FP32 [-1, 4]: each version's answers tell which version served."""
    graph = helper.make_graph(
        [helper.make_node("Add", ["x", "c"], ["y"])], "offset",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 4])],
        [numpy_helper.from_array(np.array([offset], dtype=np.float32), "c")])
    onnx.save(helper.make_model(graph, opset_imports=OPSET), path)
    return path


def slow_loading_model(path: Path, nodes: int = 15000) -> Path:
    """A long chain of Adds: small on disk, but onnxruntime takes a second or more to load it."""
    node_list, previous = [], "x"
    for i in range(nodes):
        constant = numpy_helper.from_array(np.array([1e-6], dtype=np.float32), f"c{i}")
        node_list.append(helper.make_node("Constant", [], [f"k{i}"], value=constant))
        node_list.append(helper.make_node("Add", [previous, f"k{i}"], [f"a{i}"]))
        previous = f"a{i}"
    node_list.append(helper.make_node("Identity", [previous], ["y"]))
    graph = helper.make_graph(
        node_list, "slow",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 4])])
    onnx.save(helper.make_model(graph, opset_imports=OPSET), path)
    return path


def sqrt_model(path: Path) -> Path:
    """``y = sqrt(x)`` on FP32 [-1, 4]: negative inputs give NaN."""
    graph = helper.make_graph(
        [helper.make_node("Sqrt", ["x"], ["y"])], "sqrt",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 4])])
    onnx.save(helper.make_model(graph, opset_imports=OPSET), path)
    return path


def matmul_chain_model(path: Path, width: int = 1024, layers: int = 8) -> Path:
    """``layers`` dense products on FP32 [-1, width]: slow in proportion to the batch size."""
    weights = np.random.default_rng(0).random((width, width), dtype=np.float32) / width
    nodes, previous = [], "x"
    for i in range(layers):
        nodes.append(helper.make_node("MatMul", [previous, "W"], [f"h{i}"]))
        previous = f"h{i}"
    nodes.append(helper.make_node("Identity", [previous], ["y"]))
    graph = helper.make_graph(
        nodes, "matmuls",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, width])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, width])],
        [numpy_helper.from_array(weights, "W")])
    onnx.save(helper.make_model(graph, opset_imports=OPSET), path)
    return path


def linear_model(path: Path, weights: np.ndarray) -> Path:
    """``y = x @ weights`` on FP32 [-1, 4] -> [-1, 4]: class scores whose argmax the weights set."""
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "W"], ["y"])], "linear",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 4])],
        [numpy_helper.from_array(weights.astype(np.float32), "W")])
    onnx.save(helper.make_model(graph, opset_imports=OPSET), path)
    return path


def slow_model(path: Path, width: int = 2048, layers: int = 12) -> Path:
    """FP32 [-1, 4] -> [-1, 4] through ``layers`` dense products of ``width``: tens of
    milliseconds a row, with the inputs and outputs of the offset models."""
    rng = np.random.default_rng(0)
    initializers = [numpy_helper.from_array(a.astype(np.float32), n) for n, a in (
        ("Win", rng.random((4, width)) / 4), ("W", rng.random((width, width)) / width),
        ("Wout", rng.random((width, 4)) / width))]
    nodes, previous = [helper.make_node("MatMul", ["x", "Win"], ["h"])], "h"
    for i in range(layers):
        nodes.append(helper.make_node("MatMul", [previous, "W"], [f"h{i}"]))
        previous = f"h{i}"
    nodes.append(helper.make_node("MatMul", [previous, "Wout"], ["y"]))
    graph = helper.make_graph(
        nodes, "slow",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 4])], initializers)
    onnx.save(helper.make_model(graph, opset_imports=OPSET), path)
    return path


def failing_model(path: Path) -> Path:
    """FP32 [-1, 4] whose graph reshapes to 3 columns: every request of one row fails at run
    time (4 values do not make rows of 3)."""
    graph = helper.make_graph(
        [helper.make_node("Reshape", ["x", "shape"], ["r"]),
         helper.make_node("Reshape", ["r", "back"], ["y"])], "failing",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 4])],
        [numpy_helper.from_array(np.array([-1, 3], dtype=np.int64), "shape"),
         numpy_helper.from_array(np.array([-1, 4], dtype=np.int64), "back")])
    onnx.save(helper.make_model(graph, opset_imports=OPSET), path)
    return path
