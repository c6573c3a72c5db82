"""InstanceHMR in the product: the bottom-up runner (letterbox, centre peaks, gathered decode,
LBS) against torch, the frame pipeline without a detector (boxes from the meshes, tracking), the
node's ``model`` parameter and the node on the built-in transport, ``hmr-ros eval``, ``infer``
and ``import-checkpoint``."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from hmr_ros.bag.sample import make_sample_bag  # noqa: E402
from hmr_ros.body import load_body_model  # noqa: E402
from hmr_ros.export.instancehmr_export import export_instancehmr  # noqa: E402
from hmr_ros.kernels.centres import centre_peaks_reference  # noqa: E402
from hmr_ros.models.instancehmr import InstanceHMR, InstanceHMRConfig  # noqa: E402
from hmr_ros.node.params import config_from_overrides  # noqa: E402
from hmr_ros.runtime import (BottomUpRunner, Box, FramePipeline, Header,  # noqa: E402
                             PipelineParams, open_regressor)
from hmr_ros.runtime.crop import crop_batch  # noqa: E402

SIZE = 96


def _tiny_instancehmr():
    """A tiny InstanceHMR whose centre heatmap clears the threshold at its local maxima (random
    weights: only the plumbing is under test here, never accuracy)."""
    torch.manual_seed(0)
    model = InstanceHMR(InstanceHMRConfig(backbone="tiny", input_size=SIZE, head_channels=16,
                                          instance_channels=16, param_channels=16,
                                          tiny_channels=8))
    model.train()
    with torch.no_grad():  # BatchNorm statistics of real-ish inputs
        for _ in range(3):
            model(torch.rand(2, 3, SIZE, SIZE) * 2 - 1)
        centre_out = model.final_layers[1][-1]
        centre_out.weight.mul_(20.0)
        centre_out.bias.fill_(1.0)
    return model.eval()


@pytest.fixture(scope="module")
def body():
    return load_body_model("procedural")


@pytest.fixture(scope="module")
def model_and_dir(tmp_path_factory, body):
    model = _tiny_instancehmr()
    out = tmp_path_factory.mktemp("instancehmr") / "export"
    export_instancehmr(model, out, body=body)
    return model, out


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    return make_sample_bag(tmp_path_factory.mktemp("instancehmr_bag") / "bag", seconds=1, fps=5,
                           people=2, size=160, seed=3)


def _frame(seed=0, shape=(120, 200, 3)):
    return np.random.default_rng(seed).integers(0, 255, shape, np.uint8)


def test_runner_matches_torch_peaks_and_decode(model_and_dir, body):
    model, out = model_and_dir
    runner = open_regressor(out, body, backend="onnxruntime")
    assert isinstance(runner, BottomUpRunner) and runner.bottom_up
    assert not runner.device_resident and runner.centres.max_people == 16
    image = _frame()
    found = runner.find_people(image, max_people=5)
    # the same letterbox, then torch, the NumPy peak reference and the model's own decoding
    geom = runner.letterbox(200, 120)
    assert (geom.cx, geom.cy, geom.size) == (100.0, 60.0, 200.0)
    x = crop_batch(image, [geom], runner.mean, runner.std)
    with torch.no_grad():
        ref = model(torch.from_numpy(x))
    heat = torch.sigmoid(ref["centre_heatmap"]).numpy()
    peaks = centre_peaks_reference(heat, runner.centres.threshold, 16, runner.centres.window)
    n = min(int(peaks.count[0]), 5)
    assert n == len(found["scores"]) and n >= 2, "the test model must show people"
    np.testing.assert_allclose(found["scores"], peaks.scores[0, :n], atol=1e-4)
    vectors = ref["param_map"][0].flatten(1)[:, torch.from_numpy(
        peaks.index[0, :n].astype(np.int64))].T
    dec = InstanceHMR.decode_params(vectors)
    np.testing.assert_allclose(found["rel_rotmats"], dec["rotmats"].numpy(), atol=1e-4)
    np.testing.assert_allclose(found["betas"], dec["betas"].numpy(), atol=1e-4)
    np.testing.assert_allclose(found["cam"], dec["cam"].numpy(), atol=1e-4)
    v, j = runner.lbs(found["betas"], found["rel_rotmats"])
    np.testing.assert_allclose(found["vertices"], v, atol=1e-5)
    # centres in frame pixels: heatmap cell -> input pixel -> frame, through the letterbox
    stride = runner.centres.stride
    xy = (peaks.xy[0, :n] + 0.5) * stride - 0.5
    scale = geom.size / SIZE
    expected = np.stack([(xy[:, 0] + 0.5) * scale - 0.5 + geom.cx - geom.size / 2,
                         (xy[:, 1] + 0.5) * scale - 0.5 + geom.cy - geom.size / 2], 1)
    np.testing.assert_allclose(found["centres"], expected, atol=1e-4)
    assert np.isnan(found["omega"]).all() and (found["best"] == -1).all()
    assert {"letterbox", "maps", "centres", "decode", "lbs"} <= set(found["timing"])
    # a threshold nobody reaches: nobody, with empty arrays of the right shapes
    nobody = runner.find_people(image, threshold=1.01)
    assert nobody["rel_rotmats"].shape == (0, 24, 3, 3) and nobody["vertices"].shape[0] == 0


def test_pipeline_runs_without_a_detector_and_tracks(model_and_dir, body):
    _, out = model_and_dir
    runner = open_regressor(out, body, backend="onnxruntime")
    pipeline = FramePipeline(runner, PipelineParams(max_persons=3, min_box_size=4.0))
    image = _frame(1)
    first = pipeline.process(image, None, None, Header(stamp_ns=1, frame_id="cam"))
    assert not first.skipped and 1 <= len(first.persons) <= 3
    found = runner.find_people(image, max_people=3)
    K = first.intrinsics
    for person, score in zip(first.persons, found["scores"]):
        # each box is the box of its own projected mesh, clipped to the frame
        assert np.isfinite(person.vertices).all() and np.isnan(person.visibility).all()
        v = person.vertices.astype(np.float64)
        u = K[0, 0] * v[:, 0] / v[:, 2] + K[0, 2]
        w = K[1, 1] * v[:, 1] / v[:, 2] + K[1, 2]
        expected = [max(u.min(), 0), max(w.min(), 0), min(u.max(), 200), min(w.max(), 120)]
        np.testing.assert_allclose(person.bbox, expected, atol=1e-2)
        assert person.score == pytest.approx(float(score), abs=1e-6)
    # boxes handed in are not needed, and said so; the same people come out
    again = pipeline.process(image, None, [Box(0, 0, 10, 10)], Header(stamp_ns=2))
    assert any("bottom-up" in n for n in again.notes)
    assert len(again.persons) == len(first.persons)
    np.testing.assert_allclose(again.persons[0].vertices, first.persons[0].vertices, atol=1e-5)
    # the tracker sees the mesh boxes: a second look at the same frame keeps the ids
    third = pipeline.process(image, None, None, Header(stamp_ns=3))
    assert [p.track_id for p in third.persons] == [p.track_id for p in again.persons]
    # bad input is a logged skip, as for the other models
    assert pipeline.process(np.zeros((1, 1, 3), np.uint8), None, None, Header()).skipped


def test_node_parameter_and_node_publish_without_a_detector(model_and_dir, dds_domain):
    from hmr_ros.node.node import HmrNode
    from hmr_ros.node.params import declare
    from hmr_ros.transport import types
    from hmr_ros.transport.dds import DdsTransport
    from hmr_ros.transport.images import rgb_to_image

    _, out = model_and_dir
    assert config_from_overrides({"model": "instancehmr",
                                  "model_dir": str(out)}).model == "instancehmr"
    node_t = DdsTransport("hmr_node_instancehmr", parameters={
        "model": "instancehmr", "model_dir": str(out), "image_topic": "/img",
        "camera_info_topic": "/info", "track_min_hits": 1, "max_persons": 2})
    reader = DdsTransport("instancehmr_reader")
    got = []
    reader.create_subscription("/human_mesh", "hmr_ros/msg/HumanMeshArray", got.append)
    node = HmrNode(node_t, declare(node_t))
    try:
        node.configure()
        assert node.pipeline.keypoint_detector is None  # person_detector auto: not needed
        node.activate()
        rgb = _frame(2, (96, 128, 3))
        header = types.make("std_msgs/msg/Header", frame_id="cam",
                            stamp=types.make("builtin_interfaces/msg/Time", sec=3))
        deadline = time.monotonic() + 10
        result = None
        while not got and time.monotonic() < deadline:
            result = node.process(rgb_to_image(rgb, header), time.monotonic())
            reader.spin_once(0.1)
        assert got, "no /human_mesh from the InstanceHMR node"
        msg = got[-1]
        assert 1 <= len(msg.humans) == len(result.persons) <= 2
        assert msg.header.frame_id == "cam" and msg.visibility == []
    finally:
        node.shutdown()
        node_t.close()
        reader.close()


def test_eval_and_infer_run_instancehmr(model_and_dir, sample, tmp_path):
    import cv2

    from hmr_ros import cli

    _, out = model_and_dir
    report_dir = tmp_path / "report"
    assert cli.main(["eval", str(sample), "--report", str(report_dir), "--no-progress",
                     "-p", "model:=instancehmr", "-p", f"model_dir:={out}"]) == 0
    report = json.loads((report_dir / "metrics.json").read_text())
    o = report["overall"]
    assert o["frames"] == 5 and o["matched"] + o["false_positives"] > 0
    assert report["table2"] is None and "maps" in report["latency_ms"]
    img = tmp_path / "img.png"
    cv2.imwrite(str(img), _frame(4, (96, 128, 3)))
    assert cli.main(["infer", str(img), "--model-dir", str(out), "--out",
                     str(tmp_path / "o")]) == 0
    data = json.loads((tmp_path / "o" / "img.json").read_text())
    assert len(data["persons"]) >= 1 and data["persons"][0]["visibility"] is None


def test_import_checkpoint_cli_refuses_a_foreign_checkpoint(tmp_path, capsys):
    from hmr_ros import cli

    ckpt = tmp_path / "other.pth"
    torch.save({"model_state_dict": {"module.conv.weight": torch.zeros(4, 3, 3, 3)}}, ckpt)
    assert cli.main(["import-checkpoint", "--model", "instancehmr", str(ckpt),
                     "--out", str(tmp_path / "x")]) == 1
    err = capsys.readouterr().err
    assert "hmr-ros import-checkpoint: error" in err and "conv.weight" in err
    assert not (tmp_path / "x" / "manifest.json").exists()
