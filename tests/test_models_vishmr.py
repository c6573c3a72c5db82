"""VisHMR network: shapes, merge modes (paper table 2), teacher forcing, losses, GT visibility."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hmr_ros.body import PARENTS, procedural_body
from hmr_ros.kernels import torch_ops as ops
from hmr_ros.models import (MERGE_MODES, STAGE_B_OUTPUTS, LossWeights, VisHMR, VisHMRConfig,
                            VisHMRLoss, visibility_ground_truth, weak_perspective_project)

PAR = [int(p) for p in PARENTS]


def tiny_config(**overrides):
    base = dict(backbone="resnet18", crop_size=64, uv_size=16, num_hypotheses=3,
                deconv_channels=32, attn_dim=32, attn_heads=2, attn_layers=1, flow_blocks=2,
                flow_hidden=32, head_hidden=32)
    base.update(overrides)
    return VisHMRConfig(**base)


@pytest.fixture(scope="module")
def body():
    return procedural_body()


@pytest.fixture(scope="module")
def model(body):
    torch.manual_seed(0)
    return VisHMR(tiny_config(), body).eval()


def assert_rotations(r, atol=1e-4):
    eye = torch.eye(3).expand_as(r)
    assert (r.transpose(-1, -2) @ r - eye).abs().max() < atol
    assert (torch.linalg.det(r) - 1).abs().max() < atol


def random_rotations(*shape, scale=1.0, generator=None):
    return ops.axis_angle_to_matrix(torch.randn(*shape, 3, generator=generator) * scale)


# --------------------------------------------------------------------------------------------
# Config
# --------------------------------------------------------------------------------------------


def test_default_config_is_the_papers():
    cfg = VisHMRConfig()
    assert (cfg.backbone, cfg.crop_size, cfg.feature_size, cfg.uv_size) == ("resnet50", 224, 56, 64)
    assert cfg.uv_channels == 259 and cfg.num_hypotheses == 8


@pytest.mark.parametrize("bad, match", [
    (dict(backbone="vgg16"), "backbone"), (dict(crop_size=100), "crop_size"),
    (dict(num_hypotheses=0), "num_hypotheses"), (dict(attn_dim=30, attn_heads=4), "divisible"),
])
def test_config_rejects_bad_values(bad, match):
    with pytest.raises(ValueError, match=match):
        tiny_config(**bad)


# --------------------------------------------------------------------------------------------
# Shapes and stages
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("batch", [1, 2])
def test_forward_shapes(model, body, batch):
    with torch.no_grad():
        out = model(torch.randn(batch, 3, 64, 64))
    v, k = body.num_vertices, 3
    expected = {
        "features": (batch, 32, 16, 16), "iuv": (batch, 3, 16, 16), "pooled": (batch, 512),
        "uv_features": (batch, 35, 16, 16), "z": (batch, k, 144),
        "abs_vis": (batch, 24, 3, 3), "omega": (batch, 24), "hyp_rel": (batch, k, 24, 3, 3),
        "hyp_loglik": (batch, k), "betas": (batch, 10), "cam": (batch, 3),
        "rel_rotmats": (batch, 24, 3, 3), "abs_rotmats": (batch, 24, 3, 3), "best": (batch,),
        "vertices": (batch, v, 3), "joints": (batch, 24, 3),
    }
    assert {key: tuple(out[key].shape) for key in expected} == expected
    assert ((out["iuv"] >= 0) & (out["iuv"] <= 1)).all()
    assert ((out["omega"] >= 0) & (out["omega"] <= 1)).all()
    assert torch.isfinite(out["vertices"]).all()
    assert_rotations(out["abs_vis"])
    assert_rotations(out["hyp_rel"])


def test_stage_b_output_order_is_pinned(model):
    out = model.stage_b(torch.randn(1, 35, 16, 16), torch.randn(1, 512), torch.zeros(1, 3, 144))
    assert tuple(out) == STAGE_B_OUTPUTS


def test_default_z_first_hypothesis_is_zero(model):
    z = model.default_z(4, generator=torch.Generator().manual_seed(0))
    assert z.shape == (4, 3, 144)
    assert z[:, 0].abs().max() == 0 and z[:, 1:].abs().max() > 0


def test_untrained_model_is_neutral(model):
    """Identity-biased heads: the z = 0 hypothesis is the identity pose, camera the mean."""
    with torch.no_grad():
        out = model(torch.randn(2, 3, 64, 64), z=torch.zeros(2, 3, 144))
    assert (out["hyp_rel"] - torch.eye(3)).abs().max() < 1e-5
    assert (out["cam"] - torch.tensor([0.9, 0.0, 0.0])).abs().max() < 0.05


def test_teacher_forcing_warps_with_the_given_iuv(model):
    gen = torch.Generator().manual_seed(3)
    gt_iuv = torch.rand(2, 3, 16, 16, generator=gen)
    with torch.no_grad():
        out = model(torch.randn(2, 3, 64, 64, generator=gen), gt_iuv=gt_iuv)
    expected = ops.iuv_warp(out["features"], gt_iuv, 16, 0.5)
    torch.testing.assert_close(out["uv_features"], expected)
    predicted = ops.iuv_warp(out["features"], out["iuv"], 16, 0.5)
    assert not torch.allclose(out["uv_features"], predicted)


def test_teacher_forcing_rejects_wrong_resolution(model):
    with pytest.raises(ValueError, match="gt_iuv"):
        model(torch.randn(1, 3, 64, 64), gt_iuv=torch.rand(1, 3, 64, 64))


def test_checkpoint_holds_learned_weights_only(model, body):
    keys = set(model.state_dict())
    assert not any(k.startswith("body.") for k in keys)
    assert "atlas_part_map" not in keys and "pose_mean" not in keys
    other = VisHMR(tiny_config(), body)
    other.load_state_dict(model.state_dict(), strict=True)
    assert model.atlas_part_map.shape == (16, 16)


# --------------------------------------------------------------------------------------------
# Merge modes (paper table 2)
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def crafted(model):
    """Stage B outputs where the highest-likelihood hypothesis (0) and the best match (2) differ.

    Hypothesis 2 equals the visible pose except for noise, so eq. 4 must pick it.
    """
    gen = torch.Generator().manual_seed(7)
    abs_vis = random_rotations(2, 24, generator=gen)
    hyp_rel = random_rotations(2, 3, 24, generator=gen)
    hyp_rel[:, 2] = ops.absolute_to_relative(abs_vis, PAR) @ random_rotations(
        2, 24, scale=0.05, generator=gen)
    return {
        "abs_vis": abs_vis, "omega": torch.rand(2, 24, generator=gen) * 0.8 + 0.1,
        "hyp_rel": hyp_rel, "hyp_loglik": torch.tensor([[5.0, 1.0, 0.0], [3.0, 2.0, 1.0]]),
        "betas": torch.zeros(2, 10), "cam": torch.tensor([[0.9, 0.0, 0.0]] * 2),
    }


def test_merge_modes_select_as_documented(model, crafted):
    out = {mode: model.merge(crafted, mode) for mode in MERGE_MODES}
    assert out["visible"]["best"].tolist() == [-1, -1]
    assert out["global"]["best"].tolist() == [0, 0]
    assert out["ks_highest"]["best"].tolist() == [0, 0]
    assert out["ks_matched"]["best"].tolist() == [2, 2]
    torch.testing.assert_close(out["visible"]["abs_rotmats"], crafted["abs_vis"])
    torch.testing.assert_close(out["global"]["rel_rotmats"], crafted["hyp_rel"][:, 0])
    for mode in MERGE_MODES:
        o = out[mode]
        assert_rotations(o["rel_rotmats"])
        assert_rotations(o["abs_rotmats"])
        torch.testing.assert_close(ops.relative_to_absolute(o["rel_rotmats"], PAR),
                                   o["abs_rotmats"], atol=1e-5, rtol=0)
        assert o["vertices"].shape[0] == 2 and torch.isfinite(o["vertices"]).all()
    for i, a in enumerate(MERGE_MODES):
        for b in MERGE_MODES[i + 1:]:
            diff = (out[a]["abs_rotmats"] - out[b]["abs_rotmats"]).abs().max()
            assert diff > 1e-2, (a, b)


def test_full_visibility_returns_the_visible_branch(model, crafted):
    data = dict(crafted, omega=torch.ones(2, 24))
    out = model.merge(data, "ks_matched")
    torch.testing.assert_close(out["abs_rotmats"], crafted["abs_vis"], atol=0, rtol=0)


def test_full_visibility_on_real_outputs(model):
    with torch.no_grad():
        out_b = model.stage_b(torch.randn(2, 35, 16, 16), torch.randn(2, 512),
                              model.default_z(2, generator=torch.Generator().manual_seed(0)))
    out_b["omega"] = torch.ones_like(out_b["omega"])
    merged = model.merge(out_b, "ks_matched")
    torch.testing.assert_close(merged["abs_rotmats"], out_b["abs_vis"], atol=0, rtol=0)


def test_zero_visibility_returns_the_chosen_hypothesis(model, crafted):
    out = model.merge(dict(crafted, omega=torch.zeros(2, 24)), "ks_highest")
    torch.testing.assert_close(out["rel_rotmats"], crafted["hyp_rel"][:, 0], atol=1e-5, rtol=0)


def test_unknown_merge_mode(model, crafted):
    with pytest.raises(ValueError, match="merge mode"):
        model.merge(crafted, "average")


# --------------------------------------------------------------------------------------------
# Losses and GT visibility
# --------------------------------------------------------------------------------------------


def test_loss_terms_and_weighted_total(model):
    gen = torch.Generator().manual_seed(1)
    rel = random_rotations(2, 24, scale=0.2, generator=gen)
    out = model(torch.randn(2, 3, 64, 64, generator=gen), gt_rel_rotmats=rel)
    targets = {"iuv": torch.rand(2, 3, 16, 16, generator=gen), "rel_rotmats": rel,
               "visibility": torch.rand(2, 24, generator=gen),
               "joints3d": torch.randn(2, 24, 3, generator=gen),
               "keypoints2d": torch.rand(2, 24, 2, generator=gen) * 2 - 1,
               "betas": torch.randn(2, 10, generator=gen)}
    weights = LossWeights()
    terms = VisHMRLoss(weights)(out, targets)
    names = ["iuv_part", "iuv_uv", "abs_pose", "visibility", "exp_pose", "nll", "joints3d",
             "keypoints2d", "betas", "betas_prior"]
    assert list(terms) == names + ["total"]
    total = sum(getattr(weights, n) * terms[n] for n in names)
    torch.testing.assert_close(terms["total"], total)
    # spot-check two definitions
    abs_gt = ops.relative_to_absolute(rel, PAR)
    torch.testing.assert_close(terms["abs_pose"], (out["abs_vis"] - abs_gt).abs().mean())
    proj = weak_perspective_project(out["joints"], out["cam"])
    torch.testing.assert_close(terms["keypoints2d"], (proj - targets["keypoints2d"]).abs().mean())
    torch.testing.assert_close(terms["nll"], -model.pose_log_prob(rel, out["pooled"]).mean())


def test_loss_skips_missing_targets_and_asks_for_the_gt_loglik(model):
    with torch.no_grad():
        out = model(torch.randn(1, 3, 64, 64))
    terms = VisHMRLoss()(out, {"betas": torch.zeros(1, 10)})
    assert set(terms) == {"betas", "betas_prior", "total"}
    with pytest.raises(ValueError, match="gt_rel_rotmats"):
        VisHMRLoss()(out, {"rel_rotmats": torch.eye(3).expand(1, 24, 3, 3)})


def test_weak_perspective_convention():
    joints = torch.tensor([[[0.5, -0.25, 3.0]]])
    cam = torch.tensor([[2.0, 0.1, 0.2]])
    torch.testing.assert_close(weak_perspective_project(joints, cam), torch.tensor([[[1.2, -0.1]]]))


def _identity_iuv(part_map, mask):
    """IUV whose pixel (r, c) lands on texel (r, c); foreground where ``mask``."""
    s = part_map.shape[0]
    rows, cols = torch.meshgrid(torch.arange(float(s)), torch.arange(float(s)), indexing="ij")
    return torch.stack([mask.float(), cols / (s - 1), rows / (s - 1)])[None]


def test_visibility_ground_truth_follows_eq1(model):
    part_map = model.atlas_part_map  # 16 x 16
    texels = (part_map == 3).nonzero()
    quarter = torch.zeros_like(part_map, dtype=torch.bool)
    n = len(texels) // 4
    quarter[texels[:n, 0], texels[:n, 1]] = True
    full_5 = part_map == 5
    iuv = _identity_iuv(part_map, quarter | full_5)
    omega = visibility_ground_truth(iuv, part_map)
    expected = torch.zeros(24)
    expected[3] = min(1.0, 2 * n / len(texels))
    expected[5] = 1.0
    torch.testing.assert_close(omega[0], expected)
    # rendered labels that agree with the atlas change nothing; disagreeing labels credit nobody
    agree = visibility_ground_truth(iuv, part_map, part_labels=part_map[None])
    torch.testing.assert_close(agree, omega)
    wrong = visibility_ground_truth(iuv, part_map, part_labels=torch.full((1, 16, 16), 7))
    assert wrong.abs().max() == 0


def test_iuv_head_atlas_round_trip_through_parts_and_chart_coordinates(body, model):
    """GT atlas IUV -> (part, chart-local uv) -> the head's to_atlas gives it back: the loss
    targets and the deployed IUV describe the same correspondence."""
    from hmr_ros.models.losses import atlas_to_charts

    net = model
    rng = np.random.default_rng(0)
    uv = body.uv_atlas().uv[rng.integers(0, body.num_vertices, 64)]  # atlas coords of vertices
    iuv = torch.ones(1, 3, 8, 8)
    iuv[0, 1:] = torch.from_numpy(uv.T.reshape(2, 8, 8).astype(np.float32))
    iuv[0, 0, 0, :3] = 0.0  # three background pixels
    label, local = atlas_to_charts(iuv, 24)
    assert (label[0, 0, :3] == 0).all() and (label[0].flatten()[3:] > 0).all()
    logits = torch.full((1, 25, 8, 8), -10.0).scatter(1, label[:, None], 10.0)
    p = 24
    part_uv = torch.zeros(1, 2 * p, 8, 8)
    idx = (label - 1).clamp_min(0)[:, None]
    part_uv.scatter_(1, idx, local[:, :1]).scatter_(1, idx + p, local[:, 1:])
    back = net.iuv_head.to_atlas(logits, part_uv)
    fg = label[0] > 0
    assert torch.allclose(back[0, 1:, fg], iuv[0, 1:, fg], atol=1e-5)
    assert (back[0, 0, fg] > 0.99).all() and (back[0, 0, ~fg] < 0.01).all()


def test_part_class_weights_lift_rare_parts_and_keep_the_scale():
    from hmr_ros.models.losses import part_class_weights

    label = torch.zeros(1, 10, 10, dtype=torch.long)
    label[0, 0, :4] = 3  # 4 pixels of part 2, 96 of background
    assert part_class_weights(label, 25, 0.0) is None
    w = part_class_weights(label, 25, 0.5)
    torch.testing.assert_close(w[3] / w[0], torch.tensor((96 / 4) ** 0.5))
    assert w[1] == 0 and w[4:].eq(0).all()  # absent classes
    logits = torch.randn(1, 25, 10, 10)
    plain = torch.nn.functional.cross_entropy(logits, label)
    weighted = torch.nn.functional.cross_entropy(logits, label, weight=w)
    per_pixel = torch.nn.functional.cross_entropy(logits, label, reduction="none")
    expect = (per_pixel[label == 0].mean() * w[0] * 96 + per_pixel[label == 3].mean() * w[3] * 4) \
        / (w[0] * 96 + w[3] * 4)
    torch.testing.assert_close(weighted, expect)
    assert not torch.isclose(weighted, plain)
    with pytest.raises(ValueError, match="iuv_part_balance"):
        LossWeights(iuv_part_balance=2.0)
