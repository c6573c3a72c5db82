"""The keypoint-conditioned VisHMR variant: the keypoint input changes what the model says,
exports as a fourth stage-B input, runs the same on ONNX Runtime as in torch, and gets the
detector's keypoints through the pipeline in crop-normalised coordinates."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from hmr_ros.body import procedural_body
from hmr_ros.models import VisHMR
from hmr_ros.models.keypoint_encoder import KeypointEncoder
from tiny_vishmr import TINY


@pytest.fixture(scope="module")
def kp_model():
    torch.manual_seed(0)
    net = VisHMR(dataclasses.replace(TINY, keypoint_input=True, keypoint_dim=16),
                 procedural_body())
    with torch.no_grad():  # move the encoder's last layer off its start so keypoints matter
        for p in net.keypoint_encoder.parameters():
            p.add_(0.3 * torch.randn_like(p))
        for p in net.flow.parameters():  # off the flow's identity start (as tiny_vishmr)
            p.add_(0.05 * torch.randn_like(p) / (p.shape[-1] ** 0.5 if p.dim() == 2 else 1))
    return net.eval()


def _keypoints(batch, seed=0):
    g = np.random.default_rng(seed)
    kp = np.zeros((batch, 17, 3), np.float32)
    kp[..., :2] = g.uniform(-0.8, 0.8, (batch, 17, 2))
    kp[..., 2] = g.uniform(0.3, 1.0, (batch, 17))
    return kp


def test_missing_points_contribute_nothing():
    enc = KeypointEncoder(dim=8)
    kp = torch.as_tensor(_keypoints(2))
    kp[:, 3, 2] = 0.0
    moved = kp.clone()
    moved[:, 3, :2] = torch.tensor([5.0, -7.0])  # coordinates of an absent point are ignored
    assert torch.allclose(enc(kp), enc(moved))
    moved[:, 4, :2] += 0.2  # a present point is not
    assert not torch.allclose(enc(kp), enc(moved))


def test_keypoints_change_the_pose_and_none_means_all_absent(kp_model):
    images = torch.randn(2, 3, TINY.crop_size, TINY.crop_size)
    z = kp_model.default_z(2, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        a = kp_model(images, z, keypoints=torch.as_tensor(_keypoints(2, 0)))
        b = kp_model(images, z, keypoints=torch.as_tensor(_keypoints(2, 1)))
        none = kp_model(images, z)
        zeros = kp_model(images, z, keypoints=torch.zeros(2, 17, 3))
    assert (a["hyp_rel"] - b["hyp_rel"]).abs().max() > 1e-4
    assert (a["abs_vis"] - b["abs_vis"]).abs().max() > 1e-4
    assert torch.allclose(none["hyp_rel"], zeros["hyp_rel"])


def test_export_takes_keypoints_and_matches_torch(kp_model, tmp_path):
    from hmr_ros.export import export_vishmr
    from hmr_ros.runtime import VisHMRRunner

    manifest = export_vishmr(kp_model, tmp_path)
    assert [t.name for t in manifest.stages["stage_b"].inputs][-1] == "keypoints"
    assert manifest.heads["keypoint_input"] == "coco17_crop_normalised"
    runner = VisHMRRunner(tmp_path, procedural_body(), backend="onnxruntime")
    assert runner.takes_keypoints
    crops = np.random.default_rng(1).standard_normal((3, 3, 64, 64)).astype(np.float32)
    kp = _keypoints(3, 2)
    z = runner.default_z(3)
    out = runner(crops, z, mode="global", keypoints=kp)
    with torch.no_grad():
        ref = kp_model(torch.as_tensor(crops), torch.as_tensor(z), mode="global",
                       keypoints=torch.as_tensor(kp))
    assert np.abs(out["rel_rotmats"] - ref["rel_rotmats"].numpy()).max() < 1e-3
    assert np.abs(out["cam"] - ref["cam"].numpy()).max() < 1e-4
    with pytest.raises(Exception, match="keypoints must have shape"):
        runner(crops, z, keypoints=kp[:2])


def test_pipeline_normalises_keypoints_to_the_crop():
    from hmr_ros.runtime.boxes import Box
    from hmr_ros.runtime.crop import square_geometry
    from hmr_ros.runtime.pipeline import crop_keypoints

    g = square_geometry(Box(100, 50, 200, 250), 64, context=1.2)  # side 240 around (150, 150)
    kp = np.zeros((17, 3), np.float32)
    kp[0] = [150 - 0.5, 150 - 0.5, 0.9]  # the crop's centre (pixel centres at integers)
    kp[1] = [150 - 120 - 0.5, 150 + 120 - 0.5, 0.8]  # its bottom-left outer corner
    kp[2] = [np.nan, 3.0, 1.0]
    out = crop_keypoints([kp, None], [g, g])
    assert np.allclose(out[0, 0], [0.0, 0.0, 0.9]) and np.allclose(out[0, 1], [-1.0, 1.0, 0.8])
    assert np.all(out[0, 2] == 0) and np.all(out[1] == 0)
    # the same point through the crop's own affine lands on the same normalised coordinate
    u = g.image_to_crop() @ np.array([kp[1, 0], kp[1, 1], 1.0])
    assert np.allclose((u + 0.5) / 64 * 2 - 1, [-1.0, 1.0], atol=1e-6)


def test_evaluate_feeds_keypoints_to_a_keypoint_model(kp_model, tmp_path):
    """hmr-ros evaluate on a keypoint-conditioned model: the keypoint source is reported and
    changes the answer (noisy ground truth vs none), deterministically."""
    from hmr_ros.data.synthetic import SynthConfig, write_dataset
    from hmr_ros.eval.ablation import evaluate
    from hmr_ros.export import export_vishmr

    export_vishmr(kp_model, tmp_path / "model")
    write_dataset(tmp_path / "val", 6, SynthConfig(size=64), seed=3, shard_size=6,
                  with_vertices=True, progress=False)
    run = lambda source: evaluate(tmp_path / "model", tmp_path / "val", procedural_body(),  # noqa: E731
                                  batch=3, progress=False, keypoints=source)
    gt, gt_again, none = run("noisy-gt"), run("noisy-gt"), run("none")
    assert gt["keypoints"] == "noisy-gt" and none["keypoints"] == "none"
    assert gt["all"]["global"]["mpjpe"] == gt_again["all"]["global"]["mpjpe"]
    assert gt["all"]["global"]["mpjpe"] != none["all"]["global"]["mpjpe"]


def test_torch_backend_feeds_keypoints_too(kp_model, tmp_path):
    from hmr_ros.export import export_vishmr
    from hmr_ros.runtime import VisHMRRunner

    export_vishmr(kp_model, tmp_path)
    runner = VisHMRRunner(tmp_path, procedural_body(), backend="torch", model=kp_model)
    assert runner.takes_keypoints
    crops = np.random.default_rng(3).standard_normal((2, 3, 64, 64)).astype(np.float32)
    z = runner.default_z(2)
    a = runner(crops, z, mode="global", keypoints=_keypoints(2, 4))
    b = runner(crops, z, mode="global", keypoints=_keypoints(2, 5))
    assert np.abs(a["rel_rotmats"] - b["rel_rotmats"]).max() > 1e-5
