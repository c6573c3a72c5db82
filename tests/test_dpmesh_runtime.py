"""DPMesh in the product: the two-graph chain (U-Net, then regressor) through the runner against
torch, the pipeline handing each person's COCO-17 keypoints to it, the node's ``model`` parameter
and the node on the built-in transport, ``hmr-ros eval`` and ``hmr-ros export`` of a training
checkpoint."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")

from hmr_ros.bag.sample import make_sample_bag  # noqa: E402
from hmr_ros.body import load_body_model  # noqa: E402
from hmr_ros.export.dpmesh_export import export_dpmesh  # noqa: E402
from hmr_ros.models.dpmesh import DPMesh, DPMeshConfig  # noqa: E402
from hmr_ros.node.params import ParameterError, config_from_overrides  # noqa: E402
from hmr_ros.runtime import (Box, FramePipeline, Header, ParamRegressorRunner,  # noqa: E402
                             PipelineParams, open_regressor)
from hmr_ros.runtime.crop import square_geometry  # noqa: E402
from hmr_ros.runtime.pipeline import crop_keypoints  # noqa: E402

CROP = DPMeshConfig.tiny().crop_size


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    """Tiny networks: one thread (two spin against other load on a small machine)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def body():
    return load_body_model("procedural")


@pytest.fixture(scope="module")
def model_and_dir(tmp_path_factory, body):
    torch.manual_seed(0)
    model = DPMesh(DPMeshConfig.tiny()).eval()
    out = tmp_path_factory.mktemp("dpmesh") / "export"
    export_dpmesh(model, out, body=body)
    return model, out


def _keypoints(batch, seed=0):
    rng = np.random.default_rng(seed)
    return np.concatenate([rng.uniform(-0.8, 0.8, (batch, 17, 2)),
                           rng.uniform(0.2, 1.0, (batch, 17, 1))], -1).astype(np.float32)


@pytest.mark.parametrize("batch", [1, 3])
def test_runner_chains_the_graphs_like_torch(model_and_dir, body, batch):
    model, out = model_and_dir
    runner = open_regressor(out, body, backend="onnxruntime")
    assert isinstance(runner, ParamRegressorRunner)
    assert runner.takes_keypoints and not runner.takes_context
    assert runner.chain == ("unet", "regressor")
    for stage in runner.manifest.stages.values():  # TensorRT plans: only the batch axis varies
        for t in stage.inputs + stage.outputs:
            assert t.shape[0] == "batch" and all(isinstance(d, int) for d in t.shape[1:]), t
    crops = np.random.default_rng(batch).uniform(-1, 1, (batch, 3, CROP, CROP)).astype(np.float32)
    kp = _keypoints(batch, batch)
    got = runner(crops, runner.default_z(batch), keypoints=kp)
    with torch.no_grad():
        ref = model(torch.from_numpy(crops), torch.from_numpy(kp))
    np.testing.assert_allclose(got["rel_rotmats"], ref["rotmats"].numpy(), atol=1e-4)
    np.testing.assert_allclose(got["betas"], ref["betas"].numpy(), atol=1e-4)
    np.testing.assert_allclose(got["cam"], ref["cam"].numpy(), atol=1e-4)
    assert set(got["timing"]) == {"unet", "regressor", "lbs"}
    assert np.isnan(got["omega"]).all()
    # the keypoints matter, and missing or misshapen ones are refused with the reason
    moved = runner(crops, keypoints=_keypoints(batch, 99))
    assert not np.allclose(moved["rel_rotmats"], got["rel_rotmats"], atol=1e-5)
    with pytest.raises(Exception, match="needs keypoints"):
        runner(crops)
    with pytest.raises(Exception, match="keypoints must have shape"):
        runner(crops, keypoints=np.zeros((batch, 24, 3), np.float32))


def test_pipeline_feeds_each_person_their_crop_keypoints(model_and_dir, body):
    _, out = model_and_dir
    runner = open_regressor(out, body, backend="onnxruntime")
    seen = {}
    call = runner.__call__

    class Recording:  # the real runner; keeps what the pipeline fed it
        def __getattr__(self, name):
            return getattr(runner, name)

        def __call__(self, crops, z=None, mode="ks_matched", **kwargs):
            seen.update(kwargs)
            return call(crops, z, mode, **kwargs)

    class Detector:  # fixed keypoints for whichever boxes it is asked about
        def keypoints_for_boxes(self, image, boxes):
            people = []
            for i, b in enumerate(boxes):
                kp = np.zeros((17, 3), np.float32)
                kp[:, 0] = np.linspace(b[0], b[2], 17)
                kp[:, 1] = np.linspace(b[1], b[3], 17)
                kp[:, 2] = 0.9 if i == 0 else 0.0
                people.append(type("Person", (), {"coco17": kp}))
            return people

    pipeline = FramePipeline(Recording(), PipelineParams(track=False),
                             keypoint_detector=Detector())
    image = np.random.default_rng(0).integers(0, 255, (120, 200, 3), np.uint8)
    boxes = [Box(20, 10, 70, 110, score=0.9), Box(120, 20, 170, 115, score=0.8)]
    result = pipeline.process(image, None, boxes, Header(stamp_ns=5, frame_id="cam"))
    assert not result.skipped and len(result.persons) == 2
    geoms = [square_geometry(b, CROP, pipeline.params.context) for b in boxes]
    expected = crop_keypoints([Detector().keypoints_for_boxes(image, [b.as_array()
                                                                     for b in boxes])[i].coco17
                               for i in range(2)], geoms)
    np.testing.assert_allclose(seen["keypoints"], expected, atol=1e-6)
    assert seen["keypoints"][0, :, 2].min() > 0.5 and seen["keypoints"][1, :, 2].max() == 0.0
    for p in result.persons:
        assert np.isfinite(p.vertices).all() and np.isnan(p.visibility).all()


def test_node_parameter_and_node_publish(model_and_dir, dds_domain):
    from hmr_ros.node.node import HmrNode
    from hmr_ros.node.params import declare
    from hmr_ros.transport import types
    from hmr_ros.transport.dds import DdsTransport
    from hmr_ros.transport.images import rgb_to_image

    _, out = model_and_dir
    assert config_from_overrides({"model": "dpmesh", "model_dir": str(out)}).model == "dpmesh"
    with pytest.raises(ParameterError, match="holds a dpmesh model"):
        config_from_overrides({"model": "instancehmr", "model_dir": str(out)})
    with pytest.raises(ParameterError, match="no bundled dpmesh model"):
        config_from_overrides({"model": "dpmesh"})
    node_t = DdsTransport("hmr_node_dpmesh", parameters={
        "model": "dpmesh", "model_dir": str(out), "image_topic": "/img",
        "camera_info_topic": "/info", "track_min_hits": 1, "person_detector": "none"})
    reader = DdsTransport("dpmesh_reader")
    got = []
    reader.create_subscription("/human_mesh", "hmr_ros/msg/HumanMeshArray", got.append)
    node = HmrNode(node_t, declare(node_t))
    try:
        node.configure()
        node.activate()
        rgb = np.random.default_rng(1).integers(0, 255, (48, 64, 3), np.uint8)
        header = types.make("std_msgs/msg/Header", frame_id="cam",
                            stamp=types.make("builtin_interfaces/msg/Time", sec=3))
        deadline = time.monotonic() + 10
        while not got and time.monotonic() < deadline:
            node.process(rgb_to_image(rgb, header), time.monotonic())
            reader.spin_once(0.1)
        assert got, "no /human_mesh from the DPMesh node"
        # no detector: no keypoints (all absent), still a mesh for the whole frame
        assert len(got[-1].humans) == 1 and got[-1].visibility == []
    finally:
        node.shutdown()
        node_t.close()
        reader.close()


def test_eval_runs_dpmesh_on_the_sample_bag(model_and_dir, tmp_path):
    from hmr_ros import cli

    _, out = model_and_dir
    sample = make_sample_bag(tmp_path / "bag", seconds=1, fps=3, people=2, size=160, seed=3)
    report_dir = tmp_path / "report"
    assert cli.main(["eval", str(sample), "--report", str(report_dir), "--no-progress",
                     "-p", "model:=dpmesh", "-p", f"model_dir:={out}"]) == 0
    o = json.loads((report_dir / "metrics.json").read_text())["overall"]
    assert o["frames"] == 3 and o["matched"] > 0 and np.isfinite(o["mpjpe_mm"]["mean"])
    latency = json.loads((report_dir / "metrics.json").read_text())["latency_ms"]
    assert {"unet", "regressor"} <= set(latency)


def test_export_cli_turns_a_training_checkpoint_into_a_model_folder(tmp_path, body):
    from hmr_ros import cli

    cfg = tmp_path / "tiny.yaml"
    from pathlib import Path

    text = (Path(__file__).parents[1] / "configs" / "dpmesh_tiny.yaml").read_text()
    cfg.write_text(text)
    run = tmp_path / "run"
    assert cli.main(["train", "--config", str(cfg), "--out", str(run), "--max-steps", "1",
                     "--device", "cpu"]) == 0
    ckpt = run / "last.pt"
    assert ckpt.is_file()
    out = tmp_path / "exported"
    assert cli.main(["export", "--model", "dpmesh", "--checkpoint", str(ckpt),
                     "--out", str(out)]) == 0
    runner = open_regressor(out, body, backend="onnxruntime")
    crops = np.zeros((1, 3, CROP, CROP), np.float32)
    assert runner(crops, keypoints=_keypoints(1))["vertices"].shape == (1, body.num_vertices, 3)
