"""Eq. 3's expectation loss ``|E_k θ_k - θ_gt|``: the (chordal) mean of the K hypotheses is
compared with the GT, not every hypothesis (issue 12 §3.1)."""

from __future__ import annotations

import math

import torch

from hmr_ros.kernels import torch_ops as ops
from hmr_ros.models import VisHMRLoss
from hmr_ros.models.losses import EXP_MIN_DET, LossWeights, expectation_pose_loss


def per_hypothesis_l1(hyp_rel, rel_gt):
    """The definition before the fix: every hypothesis pulled onto the GT."""
    return (hyp_rel - rel_gt[:, None]).abs().mean()


def raw_mean_l1(hyp_rel, rel_gt):
    """L1 of the unprojected matrix mean: not a rotation, minimised only by a collapsed set."""
    return (hyp_rel.mean(1) - rel_gt).abs().mean()


def rotations(*shape, scale=1.0, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return ops.axis_angle_to_matrix(torch.randn(*shape, 3, generator=gen) * scale)


def svd_polar(m):
    u, _, vt = torch.linalg.svd(m.double())
    return (u @ vt).float()


def symmetric_set(gt, spread, seed):
    """B x 4 x J hypotheses GT·R1, GT·R1^T, GT·R2, GT·R2^T (angles ~ spread, all < 90°)."""
    r = rotations(2, *gt.shape[:-2], scale=spread, seed=seed)
    return torch.stack([gt @ r[0], gt @ r[0].transpose(-1, -2),
                        gt @ r[1], gt @ r[1].transpose(-1, -2)], 1)


def test_hypotheses_symmetric_about_the_gt_cost_nothing():
    gt = rotations(2, 24, seed=1)
    hyp = symmetric_set(gt, 0.3, seed=2)
    assert float(expectation_pose_loss(hyp, gt)) < 1e-5
    assert float(per_hypothesis_l1(hyp, gt)) > 0.05  # the old term punished the spread
    assert float(raw_mean_l1(hyp, gt)) > 1e-3  # the raw matrix mean is shrunk off the GT


def test_the_expectation_is_the_chordal_mean():
    hyp, gt = rotations(3, 5, 24, scale=0.6, seed=4), rotations(3, 24, seed=5)
    torch.testing.assert_close(expectation_pose_loss(hyp, gt),
                               (svd_polar(hyp.mean(1)) - gt).abs().mean(), atol=1e-5, rtol=1e-4)
    # K = 1: the expectation is the hypothesis, the two definitions agree
    torch.testing.assert_close(expectation_pose_loss(hyp[:, :1], gt),
                               per_hypothesis_l1(hyp[:, :1], gt), atol=1e-6, rtol=1e-5)


def test_the_loss_does_not_depend_on_the_spread():
    """Hypotheses C·R(±s·w) about a centre C off the GT: d loss / d s = 0 (only the centre is
    pulled), where both the old term and the raw mean pay for s."""
    centre, gt = rotations(2, 24, scale=0.5, seed=6), rotations(2, 24, scale=0.5, seed=7)
    w = torch.randn(2, 24, 3, generator=torch.Generator().manual_seed(8))
    w = w / w.norm(dim=-1, keepdim=True)
    grads = {}
    for name, fn in [("new", expectation_pose_loss), ("old", per_hypothesis_l1),
                     ("raw", raw_mean_l1)]:
        s = torch.tensor(0.4, requires_grad=True)
        hyp = torch.stack([centre @ ops.axis_angle_to_matrix(s * w),
                           centre @ ops.axis_angle_to_matrix(-s * w)], 1)
        fn(hyp, gt).backward()
        grads[name] = float(s.grad)
    assert abs(grads["new"]) < 1e-5
    assert abs(grads["old"]) > 1e-2 and abs(grads["raw"]) > 1e-2


def test_descent_keeps_the_spread_of_6d_hypotheses():
    """Free 6D hypotheses (the flow's representation) optimised on the term alone: the old term
    and the raw matrix mean collapse them, the expectation keeps them spread while their mean
    reaches the GT."""
    gt = rotations(1, 24, scale=0.5, seed=9)
    start = ops.matrix_to_rot6d(gt)[:, None] + 0.3 * torch.randn(
        1, 8, 24, 6, generator=torch.Generator().manual_seed(10))

    def run(loss_fn):
        x = start.clone().requires_grad_(True)
        opt = torch.optim.Adam([x], lr=1e-2)
        for _ in range(300):
            opt.zero_grad()
            loss_fn(ops.rot6d_to_matrix(x), gt).backward()
            opt.step()
        with torch.no_grad():
            r = ops.rot6d_to_matrix(x)
            return float((r - r.mean(1, keepdim=True)).abs().mean()), r

    r0 = ops.rot6d_to_matrix(start)
    spread0 = float((r0 - r0.mean(1, keepdim=True)).abs().mean())
    spread_old, _ = run(per_hypothesis_l1)
    spread_raw, _ = run(raw_mean_l1)
    spread_new, r_new = run(expectation_pose_loss)
    assert spread_old < 0.1 * spread0 and spread_raw < 0.1 * spread0
    assert spread_new > 0.9 * spread0
    assert float((svd_polar(r_new.mean(1)) - gt).abs().mean()) < 5e-3


def test_degenerate_sets_keep_finite_gradients():
    gt = rotations(1, 24, seed=11)
    # identical hypotheses (a freshly initialised flow): repeated singular values
    same = gt[:, None].expand(1, 6, 24, 3, 3).clone().requires_grad_(True)
    assert float(expectation_pose_loss(same.detach(), gt)) < 1e-6
    expectation_pose_loss(same, gt + 0.1).backward()
    assert torch.isfinite(same.grad).all()
    # hypotheses spread over SO(3): det(mean) <= EXP_MIN_DET, the raw mean is compared
    x, y = (ops.axis_angle_to_matrix(torch.tensor([a, 0.0, 0.0])) for a in (math.pi / 2,
                                                                            -math.pi / 2))
    wide = torch.stack([x, y], 0)[None, :, None].expand(1, 2, 24, 3, 3).clone()
    assert float(torch.linalg.det(wide.mean(1)).max()) <= EXP_MIN_DET
    wide.requires_grad_(True)
    loss = expectation_pose_loss(wide, gt)
    torch.testing.assert_close(loss, raw_mean_l1(wide, gt))
    loss.backward()
    assert torch.isfinite(wide.grad).all()


def test_vishmr_loss_uses_the_expectation():
    hyp, gt = rotations(2, 4, 24, scale=0.5, seed=12), rotations(2, 24, seed=13)
    out = {"hyp_rel": hyp, "abs_vis": rotations(2, 24, seed=14), "betas": torch.zeros(2, 10)}
    terms = VisHMRLoss(LossWeights(nll=0.0))(out, {"rel_rotmats": gt})
    torch.testing.assert_close(terms["exp_pose"], expectation_pose_loss(hyp, gt))
    assert "nll" not in terms
