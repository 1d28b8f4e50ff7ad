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
