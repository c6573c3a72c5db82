"""ImpHMR (paper 003): shapes, the viewing direction, imagination targets, overfitting, export."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch

from hmr_ros.export.trt_support import check_tensorrt_compat
from hmr_ros.kernels import torch_ops as ops
from hmr_ros.models.imphmr import (IMPHMR_OUTPUTS, ImpHMR, ImpHMRConfig, ImpHMRExport,
                                   ImpHMRLoss, ImpHMRLossWeights, imagined_targets, rotate_global_orient,
                                   rotation_about_vertical, sample_view_directions)

CROP = 64  # small crops keep the file fast on 2 cores; the network is size-agnostic
LIGHT = "efficientnet_lite0"


def _config(**overrides) -> ImpHMRConfig:
    base = dict(backbone=LIGHT, crop_size=CROP, field_channels=16, field_depth=8, field_size=8,
                render_size=8, ray_samples=8, renderer_channels=64, regressor_hidden=256,
                regressor_dropout=0.0)
    base.update(overrides)
    return ImpHMRConfig(**base)


def _eval_model(config: ImpHMRConfig) -> ImpHMR:
    """A random model in eval mode with BatchNorm statistics measured on a few batches (a fresh
    EfficientNet-Lite's default statistics make eval-mode activations vanish)."""
    model = ImpHMR(config)
    for module in model.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.reset_running_stats()
            module.momentum = None
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(torch.randn(4, 3, config.crop_size, config.crop_size))
    return model.eval()


@pytest.fixture(scope="module")
def model() -> ImpHMR:
    torch.manual_seed(0)
    return _eval_model(_config())


@pytest.mark.parametrize("batch", [1, 3])
def test_output_shapes(model, batch):
    with torch.no_grad():
        out = model(torch.randn(batch, 3, CROP, CROP), return_render=True)
        plain = model(torch.randn(batch, 3, CROP, CROP))
    assert out["rotmats"].shape == (batch, 24, 3, 3)
    assert out["betas"].shape == (batch, 10) and out["cam"].shape == (batch, 3)
    assert out["rot6d"].shape == (batch, 24, 6)
    assert out["silhouette"].shape == (batch, 8, 8) and out["features"].shape == (batch, 16, 8, 8)
    assert ((out["silhouette"] >= 0) & (out["silhouette"] <= 1)).all()
    assert "silhouette" not in plain and "features" not in plain
    rrt = out["rotmats"] @ out["rotmats"].transpose(-1, -2)
    assert torch.allclose(rrt, torch.eye(3).expand(batch, 24, 3, 3), atol=1e-5)


def test_canonical_path_equals_general_renderer_at_zero(model):
    """The export's axis-aligned sampling is the rotated renderer at φ = 0, also when the render
    grid differs from the field grid (a trilinear resize then)."""
    images = torch.randn(2, 3, CROP, CROP)
    torch.manual_seed(1)
    resized = _eval_model(_config(render_size=6, ray_samples=12))
    for m in (model, resized):
        with torch.no_grad():
            field = m.field(images)
            fast = m.sample_canonical(field)
            general = m.sample_view(field, torch.zeros(2))
            assert torch.allclose(fast, general, atol=1e-5)
            a = m(images, return_render=True)
            b = m(images, phi=torch.zeros(2), return_render=True)
        assert torch.allclose(a["silhouette"], b["silhouette"], atol=1e-5)
        assert torch.allclose(a["rot6d"], b["rot6d"], atol=1e-4)


def test_phi_changes_the_prediction(model):
    images = torch.randn(2, 3, CROP, CROP)
    with torch.no_grad():
        front = model(images, return_render=True)
        side = model(images, phi=torch.full((2,), math.pi / 2), return_render=True)
        turned = model(images, phi=math.pi / 2, return_render=True)  # scalar φ broadcasts
    assert (front["features"] - side["features"]).abs().max() > 1e-3
    assert (front["rot6d"] - side["rot6d"]).abs().max() > 1e-5
    assert torch.allclose(side["rot6d"], turned["rot6d"])
    # a half turn of a view-independent field composites the same rays back to front: same
    # features only if the field were symmetric; here it is not
    with torch.no_grad():
        back = model(images, phi=torch.full((2,), math.pi), return_render=True)
    assert (front["silhouette"] - back["silhouette"]).abs().max() > 1e-4
    with pytest.raises(ValueError, match="phi"):
        model(images, phi=torch.zeros(3))


def test_rotation_about_vertical_and_imagination_targets():
    phi = torch.tensor([0.3, -1.2, 2.5])
    rot = rotation_about_vertical(phi)
    assert torch.allclose(rot @ rotation_about_vertical(-phi), torch.eye(3).expand(3, 3, 3),
                          atol=1e-6)
    assert torch.allclose(rot[:, 1], torch.tensor([0.0, 1.0, 0.0]).expand(3, 3))  # y fixed
    assert torch.allclose(torch.linalg.det(rot), torch.ones(3), atol=1e-6)
    torch.manual_seed(0)
    rotmats = ops.axis_angle_to_matrix(0.5 * torch.randn(3, 24, 3))
    turned = rotate_global_orient(rotmats, phi)
    assert torch.allclose(turned[:, 1:], rotmats[:, 1:])  # only the global orientation moves
    assert torch.allclose(turned[:, 0], rot @ rotmats[:, 0], atol=1e-6)
    assert torch.allclose(rotate_global_orient(turned, -phi), rotmats, atol=1e-5)  # φ then -φ
    # the turned pose posed by the body model gives the turned joints (about the root)
    loss = ImpHMRLoss()
    betas = torch.randn(3, 10) * 0.5
    verts, joints = loss.lbs(betas, rotmats)
    _, joints_turned = loss.lbs(betas, turned)
    cam = torch.tensor([[0.9, 0.1, -0.1]] * 3)
    rot_t, joints_t, verts_t = imagined_targets(rotmats, joints, verts, cam, phi)
    assert torch.allclose(rot_t, turned)
    assert torch.allclose(joints_t, joints_turned - joints_turned[:, :1], atol=1e-5)
    # vertices turn rigidly: distances kept, the pivot line x = -tx at the root depth fixed
    exact = "donot_use_mm_for_euclid_dist"
    assert torch.allclose(torch.cdist(verts_t, verts_t, compute_mode=exact),
                          torch.cdist(verts, verts, compute_mode=exact), atol=1e-5)
    _, _, back = imagined_targets(turned, joints, verts_t, cam, -phi)
    assert torch.allclose(back, verts, atol=1e-5)


def test_sample_view_directions_cover_a_turn():
    phi = sample_view_directions(2000, generator=torch.Generator().manual_seed(0))
    assert phi.shape == (2000,) and phi.min() >= -math.pi and phi.max() < math.pi
    assert phi.min() < -3.0 and phi.max() > 3.0


def test_config_rejects_bad_values():
    with pytest.raises(ValueError, match="backbone"):
        ImpHMRConfig(backbone="vgg16")
    with pytest.raises(ValueError, match="crop_size"):
        ImpHMRConfig(crop_size=100)
    with pytest.raises(ValueError, match="ray_samples"):
        ImpHMRConfig(ray_samples=0)
    with pytest.raises(ValueError, match="iterations"):
        ImpHMRConfig(iterations=0)


def test_overfits_a_fixed_tiny_batch():
    """Every loss term (canonical, imagination, consistency) falls by >= 5x on a fixed batch at
    fixed directions, training the weighted total.

    Two departures from the defaults, both so that every term has something to show in 100
    steps: λ_β = 1 instead of SPIN's 1e-3 (which moves β too slowly for a short test), and the
    decoders start at gain 1 instead of SPIN's 0.01 (with SPIN's init both directions predict the
    mean, so the consistency terms start at ~0)."""
    torch.manual_seed(0)
    model = ImpHMR(_config()).train()
    reg = model.regressor
    for layer in (reg.dec_pose, reg.dec_shape, reg.dec_cam):
        torch.nn.init.xavier_uniform_(layer.weight, gain=1.0)
    loss_fn = ImpHMRLoss(ImpHMRLossWeights(betas=1.0))
    images = torch.randn(2, 3, CROP, CROP)
    rotmats = ops.axis_angle_to_matrix(0.4 * torch.randn(2, 24, 3))
    targets = {"rotmats": rotmats, "betas": torch.randn(2, 10),
               "cam": torch.tensor([[0.7, 0.1, -0.1], [1.1, -0.2, 0.05]])}
    with torch.no_grad():
        _, joints = loss_fn.lbs(targets["betas"], rotmats)
    targets["keypoints2d"] = 0.8 * (joints[..., :2] + targets["cam"][:, None, 1:])
    phi = torch.tensor([0.8, -1.5])
    optim = torch.optim.Adam(model.parameters(), lr=1e-3)

    def losses():
        canonical, view = model.forward_views(images, phi)  # one backbone pass for both
        return loss_fn(canonical, targets, view, phi)

    with torch.no_grad():
        first = {k: float(v) for k, v in losses().items()}
    for _ in range(100):
        terms = losses()
        optim.zero_grad()
        terms["total"].backward()
        optim.step()
    with torch.no_grad():
        last = {k: float(v) for k, v in losses().items()}
    print("overfit losses first -> last:", {k: (first[k], last[k]) for k in first})
    assert set(first) == {"reg_keypoints2d", "reg_joints3d", "reg_pose", "reg_betas", "reg_cam",
                          "reg_silhouette", "imag_joints3d", "imag_pose", "imag_betas",
                          "imag_silhouette", "cons_pose", "cons_betas", "total"}
    for name in first:
        assert last[name] < first[name] / 5, (name, first[name], last[name])


def test_forward_views_equals_separate_passes(model):
    images = torch.randn(2, 3, CROP, CROP)
    phi = torch.tensor([0.5, -2.0])
    with torch.no_grad():
        canonical, view = model.forward_views(images, phi)
        alone = model(images, phi=phi, return_render=True)
        front = model(images)
    assert torch.allclose(view["rot6d"], alone["rot6d"], atol=1e-6)
    assert torch.allclose(view["silhouette"], alone["silhouette"], atol=1e-6)
    assert torch.allclose(canonical["cam"], front["cam"], atol=1e-6)


def test_loss_uses_a_given_mask_and_needs_phi_with_a_view(model):
    images = torch.randn(2, 3, CROP, CROP)
    targets = {"rotmats": torch.eye(3).expand(2, 24, 3, 3), "betas": torch.zeros(2, 10),
               "cam": torch.tensor([[0.9, 0.0, 0.0]] * 2)}
    loss_fn = ImpHMRLoss()
    with torch.no_grad():
        out = model(images, return_render=True)
        full = loss_fn(out, {**targets, "mask": torch.ones(2, 32, 32)})
        empty = loss_fn(out, {**targets, "mask": torch.zeros(2, 32, 32)})
    expected_full = float(((out["silhouette"] - 1) ** 2).mean())
    assert abs(float(full["reg_silhouette"]) - expected_full) < 1e-6
    assert abs(float(empty["reg_silhouette"]) - float((out["silhouette"] ** 2).mean())) < 1e-6
    assert "imag_pose" not in full  # no view outputs: canonical terms only
    with pytest.raises(ValueError, match="phi"):
        loss_fn(out, targets, view=out)


def test_onnx_export_canonical_matches_torch_and_parses_in_tensorrt(model, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    graph = ImpHMRExport(model).eval()
    path = tmp_path / "imphmr.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(graph, (torch.randn(2, 3, CROP, CROP),), str(path), dynamo=False,
                          opset_version=17, input_names=["images"],
                          output_names=list(IMPHMR_OUTPUTS),
                          dynamic_axes={n: {0: "batch"} for n in ("images", *IMPHMR_OUTPUTS)},
                          do_constant_folding=True)
    problems = check_tensorrt_compat(path)
    assert problems == [], [str(p) for p in problems]
    import onnx
    ops_used = {node.op_type for node in onnx.load(str(path)).graph.node}
    assert "GridSample" not in ops_used  # no per-direction sampling in the deployed graph
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for batch in (1, 4):
        images = torch.randn(batch, 3, CROP, CROP)
        with torch.no_grad():
            expected = model(images)
        got = session.run(list(IMPHMR_OUTPUTS), {"images": images.numpy()})
        for name, value in zip(IMPHMR_OUTPUTS, got):
            assert value.shape == tuple(expected[name].shape)
            np.testing.assert_allclose(value, expected[name].numpy(), atol=1e-4, rtol=1e-4)
    assert np.abs(got[2][:, 0]).max() > 0.1  # calibrated BatchNorm: outputs are not degenerate
