"""TensorRT compatibility check and manifest validation, on small graphs built here."""

from __future__ import annotations

import json

import onnx
import pytest
from onnx import TensorProto, helper

from hmr_ros.export import (ExportError, Manifest, StageSpec, TensorSpec, check_tensorrt_compat,
                            TENSORRT_VERSION)
from hmr_ros.export.manifest import sha256_of


def graph_with(nodes, opset=17, extra_opsets=(), subgraph=None):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])
    g = helper.make_graph(nodes, "g", [x], [y])
    ops = [helper.make_opsetid("", opset), *[helper.make_opsetid(d, 1) for d in extra_opsets]]
    return helper.make_model(g, opset_imports=ops)


def test_supported_graph_has_no_problems():
    m = graph_with([helper.make_node("Relu", ["x"], ["h"]), helper.make_node("Sigmoid", ["h"], ["y"])])
    assert check_tensorrt_compat(m) == []


@pytest.mark.parametrize("node,needle", [
    (helper.make_node("Det", ["x"], ["y"]), f"not supported by TensorRT {TENSORRT_VERSION}"),
    (helper.make_node("RandomNormalLike", ["x"], ["y"]), "random sampling inside the graph"),
    (helper.make_node("MyOp", ["x"], ["y"], domain="com.example"), "custom domain"),
])
def test_unsupported_nodes_are_reported(node, needle):
    m = graph_with([node], extra_opsets=["com.example"] if node.domain else ())
    problems = check_tensorrt_compat(m)
    assert len(problems) == 1 and needle in str(problems[0])
    assert problems[0].op_type == node.op_type


def test_too_new_opset_is_reported():
    problems = check_tensorrt_compat(graph_with([helper.make_node("Relu", ["x"], ["y"])], opset=22))
    assert any("opset 22" in str(p) for p in problems)


def test_nodes_inside_subgraphs_are_checked():
    then_out = helper.make_tensor_value_info("t", TensorProto.FLOAT, [4])
    then_g = helper.make_graph([helper.make_node("Unique", ["x"], ["t"])], "then", [], [then_out])
    else_g = helper.make_graph([helper.make_node("Identity", ["x"], ["e"])], "else", [],
                               [helper.make_tensor_value_info("e", TensorProto.FLOAT, [4])])
    cond = helper.make_node("Constant", [], ["c"], value=helper.make_tensor("c", TensorProto.BOOL, [], [True]))
    node = helper.make_node("If", ["c"], ["y"], then_branch=then_g, else_branch=else_g)
    problems = check_tensorrt_compat(graph_with([cond, node]))
    assert [p.op_type for p in problems] == ["Unique"]


def make_stage(tmp_path, name="stage_a.onnx"):
    m = graph_with([helper.make_node("Relu", ["x"], ["y"])])
    path = tmp_path / name
    onnx.save(m, str(path))
    return path


def make_manifest(tmp_path, **overrides) -> Manifest:
    path = make_stage(tmp_path)
    stage = StageSpec(file=path.name, sha256=sha256_of(path),
                      inputs=(TensorSpec("x", ("batch", 4)),), outputs=(TensorSpec("y", ("batch", 4)),))
    fields = dict(model="vishmr", stages={"stage_a": stage}, preprocessing={"crop_size": 64},
                  body={"name": "procedural"}, heads={"num_hypotheses": 2})
    fields.update(overrides)
    return Manifest(**fields)


def test_manifest_round_trip(tmp_path):
    m = make_manifest(tmp_path)
    m.save(tmp_path)
    back = Manifest.load(tmp_path)
    assert back == m
    assert back.stage_path(tmp_path, "stage_a") == tmp_path / "stage_a.onnx"


def test_replaced_graph_is_detected(tmp_path):
    make_manifest(tmp_path).save(tmp_path)
    onnx.save(graph_with([helper.make_node("Sigmoid", ["x"], ["y"])]), str(tmp_path / "stage_a.onnx"))
    with pytest.raises(ExportError, match="does not match the manifest"):
        Manifest.load(tmp_path)


def test_missing_graph_and_missing_manifest_are_clear(tmp_path):
    with pytest.raises(ExportError, match="no manifest.json .* export the model first"):
        Manifest.load(tmp_path)
    make_manifest(tmp_path).save(tmp_path)
    (tmp_path / "stage_a.onnx").unlink()
    with pytest.raises(ExportError, match="stage 'stage_a' file stage_a.onnx is missing"):
        Manifest.load(tmp_path)


def test_manifest_that_disagrees_with_the_graph_is_refused(tmp_path):
    m = make_manifest(tmp_path)
    bad = StageSpec(file=m.stages["stage_a"].file, sha256=m.stages["stage_a"].sha256,
                    inputs=(TensorSpec("images", ("batch", 4)),), outputs=m.stages["stage_a"].outputs)
    Manifest(**{**m.__dict__, "stages": {"stage_a": bad}}).save(tmp_path)
    with pytest.raises(ExportError, match="input 'images' is not in the graph"):
        Manifest.load(tmp_path)
    wrong_shape = StageSpec(file=bad.file, sha256=bad.sha256, inputs=(TensorSpec("x", ("batch", 5)),),
                            outputs=bad.outputs)
    Manifest(**{**m.__dict__, "stages": {"stage_a": wrong_shape}}).save(tmp_path)
    with pytest.raises(ExportError, match=r"input 'x' has shape \['batch', 4\]"):
        Manifest.load(tmp_path)


def test_malformed_or_old_manifest(tmp_path):
    (tmp_path / "manifest.json").write_text("{not json")
    with pytest.raises(ExportError, match="malformed manifest"):
        Manifest.load(tmp_path)
    (tmp_path / "manifest.json").write_text(json.dumps({"format_version": 0}))
    with pytest.raises(ExportError, match="re-export the model"):
        Manifest.load(tmp_path)
