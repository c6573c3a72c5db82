"""SMPL-parameter regressors (OCHMR) in the product: export with its manifest, ONNX Runtime
parity, the runner, the frame pipeline (centre maps from the frame's people), the node's
``model`` parameter, the node on the built-in transport, and ``hmr-ros eval``."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from hmr_ros.bag import BagReader  # noqa: E402
from hmr_ros.bag.sample import make_sample_bag  # noqa: E402
from hmr_ros.body import load_body_model  # noqa: E402
from hmr_ros.eval import bag_eval  # noqa: E402
from hmr_ros.export import ExportError, Manifest, check_tensorrt_compat  # noqa: E402
from hmr_ros.export import export_param_regressor  # noqa: E402
from hmr_ros.models.ochmr import OCHMR, OCHMRConfig  # noqa: E402
from hmr_ros.node.params import ParameterError, config_from_overrides  # noqa: E402
from hmr_ros.runtime import (Box, FramePipeline, Header, ParamRegressorRunner,  # noqa: E402
                             PipelineParams, open_regressor)
from hmr_ros.runtime.context import centre_maps, crop_box  # noqa: E402
from hmr_ros.runtime.crop import square_geometry  # noqa: E402

CONTEXT = {"channels": 2, "size": 16, "sigma": 0.08}


def _tiny_ochmr():
    torch.manual_seed(0)
    cfg = OCHMRConfig(backbone="efficientnet_lite0", crop_size=64, conorm_latent=16,
                      regressor_hidden=64, regressor_dropout=0.0,
                      centre_map_size=CONTEXT["size"], centre_sigma=CONTEXT["sigma"])
    model = OCHMR(cfg)
    model.train()
    with torch.no_grad():  # BatchNorm statistics of real-ish inputs, not the degenerate init
        for _ in range(3):
            model(torch.rand(4, 3, 64, 64) * 2 - 1, torch.rand(4, 2, 16, 16))
    return model.eval()


@pytest.fixture(scope="module")
def body():
    return load_body_model("procedural")


@pytest.fixture(scope="module")
def model_and_dir(tmp_path_factory, body):
    model = _tiny_ochmr()
    out = tmp_path_factory.mktemp("ochmr") / "export"
    export_param_regressor(model, out, name="ochmr", body=body, context=CONTEXT)
    return model, out


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    return make_sample_bag(tmp_path_factory.mktemp("ochmr_bag") / "bag", seconds=1, fps=5,
                           people=2, size=160, seed=3)


def test_export_manifest_is_verified_and_graph_is_tensorrt_parsable(model_and_dir, body):
    _, out = model_and_dir
    manifest = Manifest.load(out)  # files, hashes and graph IO checked
    assert manifest.model == "ochmr" and list(manifest.stages) == ["regressor"]
    assert [t.name for t in manifest.stages["regressor"].inputs] == ["images", "context"]
    assert [t.name for t in manifest.stages["regressor"].outputs] == ["rotmats", "betas", "cam"]
    assert manifest.heads["context"] == {"kind": "centre_maps", **CONTEXT}
    assert manifest.heads["predicts_visibility"] is False
    assert manifest.body["num_vertices"] == body.num_vertices
    assert check_tensorrt_compat(out / "regressor.onnx") == []
    # a stale graph is refused
    (out / "regressor.onnx").write_bytes((out / "regressor.onnx").read_bytes() + b"\0")
    try:
        with pytest.raises(ExportError, match="sha256"):
            Manifest.load(out)
    finally:
        (out / "regressor.onnx").write_bytes((out / "regressor.onnx").read_bytes()[:-1])


@pytest.mark.parametrize("batch", [1, 4])
def test_runner_matches_torch_and_poses_the_body(model_and_dir, body, batch):
    model, out = model_and_dir
    runner = open_regressor(out, body, backend="onnxruntime")
    assert isinstance(runner, ParamRegressorRunner) and runner.takes_context
    rng = np.random.default_rng(batch)
    crops = rng.uniform(-2, 2, (batch, 3, 64, 64)).astype(np.float32)
    context = rng.uniform(0, 1, (batch, 2, 16, 16)).astype(np.float32)
    got = runner(crops, runner.default_z(batch), context=context)
    with torch.no_grad():
        ref = model(torch.from_numpy(crops), torch.from_numpy(context))
    np.testing.assert_allclose(got["rel_rotmats"], ref["rotmats"].numpy(), atol=1e-4)
    np.testing.assert_allclose(got["betas"], ref["betas"].numpy(), atol=1e-4)
    np.testing.assert_allclose(got["cam"], ref["cam"].numpy(), atol=1e-4)
    v, j = runner.lbs(got["betas"], got["rel_rotmats"])
    np.testing.assert_array_equal(got["vertices"], v)
    assert got["joints"].shape == (batch, 24, 3) and np.isnan(got["omega"]).all()
    assert (got["best"] == -1).all() and set(got["timing"]) == {"regressor", "lbs"}


def test_runner_refuses_missing_or_misshapen_context(model_and_dir, body):
    _, out = model_and_dir
    runner = open_regressor(out, body, backend="onnxruntime")
    crops = np.zeros((2, 3, 64, 64), np.float32)
    with pytest.raises(Exception, match="needs context maps"):
        runner(crops)
    with pytest.raises(Exception, match="context must have shape"):
        runner(crops, context=np.zeros((2, 2, 8, 8), np.float32))


def test_pipeline_feeds_every_person_their_centre_maps(model_and_dir, body):
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

    pipeline = FramePipeline(Recording(), PipelineParams(track=False))
    image = np.random.default_rng(0).integers(0, 255, (120, 200, 3), np.uint8)
    boxes = [Box(20, 10, 70, 110, score=0.9), Box(120, 20, 170, 115, score=0.8)]
    result = pipeline.process(image, None, boxes, Header(stamp_ns=5, frame_id="cam"))
    assert not result.skipped and len(result.persons) == 2
    chosen = sorted(boxes, key=lambda b: -b.score)
    geoms = [square_geometry(b, 64, pipeline.params.context) for b in chosen]
    expected = centre_maps([b.as_array() for b in chosen], [crop_box(g) for g in geoms], 16,
                           sigma=CONTEXT["sigma"])
    np.testing.assert_allclose(seen["context"], expected, atol=1e-6)
    # each person's local peak is at their own box centre, the global map holds both
    assert seen["context"][0, 1].max() == pytest.approx(seen["context"][1, 1].max(), abs=0.05)
    for p in result.persons:
        assert np.isfinite(p.vertices).all() and np.isnan(p.visibility).all()
        assert p.hypothesis == -1


def test_node_model_parameter_checks_and_picks(model_and_dir, tmp_path):
    _, out = model_and_dir
    assert config_from_overrides({"model": "ochmr", "model_dir": str(out)}).model_dir == str(out)
    assert config_from_overrides({"model_dir": str(out)}).model == "auto"
    with pytest.raises(ParameterError, match="holds a ochmr model"):
        config_from_overrides({"model": "vishmr", "model_dir": str(out)})
    with pytest.raises(ParameterError, match="no bundled imphmr model"):
        config_from_overrides({"model": "imphmr"})


def test_node_publishes_ochmr_meshes_without_visibility(model_and_dir, dds_domain):
    from hmr_ros.node.node import HmrNode
    from hmr_ros.node.params import declare
    from hmr_ros.transport import types
    from hmr_ros.transport.dds import DdsTransport
    from hmr_ros.transport.images import rgb_to_image

    _, out = model_and_dir
    node_t = DdsTransport("hmr_node_ochmr", parameters={
        "model": "ochmr", "model_dir": str(out), "image_topic": "/img",
        "camera_info_topic": "/info", "track_min_hits": 1, "person_detector": "none"})
    reader = DdsTransport("ochmr_reader")
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
            result = node.process(rgb_to_image(rgb, header), time.monotonic())
            reader.spin_once(0.1)
        assert got, "no /human_mesh from the OCHMR node"
        msg = got[-1]
        assert len(msg.humans) == len(result.persons) == 1  # the whole frame, no detector
        assert len(msg.humans[0].vertices) == 3 * 5424 and msg.visibility == []
        assert msg.humans[0].hypothesis_index == -1
    finally:
        node.shutdown()
        node_t.close()
        reader.close()


def test_eval_runs_ochmr_on_the_sample_bag(model_and_dir, sample, tmp_path):
    from hmr_ros import cli

    _, out = model_and_dir
    report_dir = tmp_path / "report"
    assert cli.main(["eval", str(sample), "--report", str(report_dir), "--no-progress",
                     "-p", "model:=ochmr", "-p", f"model_dir:={out}",
                     "-p", "person_detector:=none"]) == 0
    report = json.loads((report_dir / "metrics.json").read_text())
    o = report["overall"]
    with BagReader(sample) as bag:
        frames = next(t.count for t in bag.topics() if t.topic == "/camera/image_raw")
    assert o["frames"] == frames and o["matched"] > 0
    assert o["mpjpe_mm"]["count"] == o["matched"] and np.isfinite(o["mpjpe_mm"]["mean"])
    assert o["visibility_accuracy"]["count"] == 0  # no visibility head: not scored as wrong
    assert report["table2"] is None  # the merge modes are VisHMR's
    assert "regressor" in report["latency_ms"]


def test_infer_runs_an_ochmr_export(model_and_dir, tmp_path, capsys):
    import cv2

    from hmr_ros import cli

    _, out = model_and_dir
    img = tmp_path / "img.png"
    cv2.imwrite(str(img), np.random.default_rng(2).integers(0, 255, (96, 128, 3), np.uint8))
    assert cli.main(["infer", str(img), "--model-dir", str(out), "--out", str(tmp_path / "o"),
                     "--person-detector", "none"]) == 0
    data = json.loads((tmp_path / "o" / "img.json").read_text())
    assert len(data["persons"]) == 1 and data["persons"][0]["visibility"] is None
    assert (tmp_path / "o" / "img_overlay.png").is_file()


def test_export_cli_turns_a_training_checkpoint_into_a_model_folder(tmp_path, body, capsys):
    from dataclasses import asdict

    from hmr_ros import cli
    from hmr_ros.train.param_regressor import PARAM_FORMAT

    model = _tiny_ochmr()
    ckpt = tmp_path / "last.pt"
    torch.save({"format": PARAM_FORMAT, "model": "ochmr", "config": asdict(model.config),
                "body": "procedural", "state_dict": model.state_dict()}, ckpt)
    out = tmp_path / "exported"
    assert cli.main(["export", "--model", "imphmr", "--checkpoint", str(ckpt),
                     "--out", str(out)]) != 0
    assert "is a ochmr checkpoint, not imphmr" in capsys.readouterr().err
    assert cli.main(["export", "--model", "ochmr", "--checkpoint", str(ckpt),
                     "--out", str(out)]) == 0
    assert "TensorRT op check passed" in capsys.readouterr().out
    runner = open_regressor(out, body, backend="onnxruntime")
    assert runner.context == (2, CONTEXT["size"], CONTEXT["sigma"])
    crops = np.random.default_rng(0).uniform(-2, 2, (2, 3, 64, 64)).astype(np.float32)
    context = np.random.default_rng(1).uniform(0, 1, (2, 2, 16, 16)).astype(np.float32)
    with torch.no_grad():
        ref = model(torch.from_numpy(crops), torch.from_numpy(context))
    np.testing.assert_allclose(runner(crops, context=context)["betas"], ref["betas"].numpy(),
                               atol=1e-4)


def test_imphmr_export_runs_through_pipeline_and_eval(body, sample, tmp_path):
    """ImpHMR's canonical-view graph: exported, verified, scored on the sample bag."""
    from hmr_ros import cli
    from hmr_ros.models.imphmr import ImpHMR, ImpHMRConfig, ImpHMRExport

    torch.manual_seed(0)
    model = ImpHMR(ImpHMRConfig(backbone="efficientnet_lite0", crop_size=64, field_channels=8,
                                field_depth=8, field_size=8, render_size=8, ray_samples=8,
                                renderer_channels=32, regressor_hidden=64,
                                regressor_dropout=0.0))
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(torch.rand(4, 3, 64, 64) * 2 - 1)
    model.eval()
    out = tmp_path / "imphmr"
    manifest = export_param_regressor(model, out, name="imphmr", body=body,
                                      module=ImpHMRExport(model))
    assert manifest.heads["context"] is None
    assert [t.name for t in Manifest.load(out).stages["regressor"].inputs] == ["images"]
    runner = open_regressor(out, body, backend="onnxruntime")
    assert not runner.takes_context
    crops = np.random.default_rng(4).uniform(-2, 2, (3, 3, 64, 64)).astype(np.float32)
    with torch.no_grad():
        ref = model(torch.from_numpy(crops))
    np.testing.assert_allclose(runner(crops)["rel_rotmats"], ref["rotmats"].numpy(), atol=1e-4)
    report_dir = tmp_path / "report"
    assert cli.main(["eval", str(sample), "--report", str(report_dir), "--no-progress",
                     "-p", "model:=imphmr", "-p", f"model_dir:={out}",
                     "-p", "person_detector:=none"]) == 0
    o = json.loads((report_dir / "metrics.json").read_text())["overall"]
    assert o["matched"] > 0 and np.isfinite(o["pa_mpjpe_mm"]["mean"])
