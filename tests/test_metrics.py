"""hmr_ros.eval.metrics against hand-computed cases."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hmr_ros.eval import (MeshMetrics, mpjpe, pa_mpjpe, procrustes_align, pve,
                          similarity_transform, visibility_accuracy)


def _rot(axis, angle):
    axis = np.asarray(axis, float) / np.linalg.norm(axis)
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + np.sin(angle) * k + (1 - np.cos(angle)) * k @ k


def _skeleton(rng, batch=3, joints=24):
    return rng.normal(0, 0.3, (batch, joints, 3))


def test_translation_only_error_is_removed_by_root_alignment():
    gt = _skeleton(np.random.default_rng(0))
    assert np.allclose(mpjpe(gt + [1.0, -2.0, 0.5], gt), 0, atol=1e-9)


def test_mpjpe_hand_computed():
    gt = np.zeros((1, 3, 3))
    gt[0, 1] = [1, 0, 0]
    gt[0, 2] = [0, 1, 0]
    pred = gt.copy()
    pred[0, 1] += [0, 0.003, 0.004]  # 5 mm
    pred[0, 2] += [0.012, 0, 0]  # 12 mm
    assert mpjpe(pred, gt) == pytest.approx([(0 + 5 + 12) / 3])
    # the root moves the whole (root-aligned) skeleton: a 1 cm root error is 1 cm elsewhere
    pred2 = gt.copy()
    pred2[0, 0] += [0.01, 0, 0]
    assert mpjpe(pred2, gt) == pytest.approx([(0 + 10 + 10) / 3])
    # mask: leave joint 2 out
    assert mpjpe(pred, gt, mask=[[1, 1, 0]]) == pytest.approx([2.5])


def test_similarity_copy_has_zero_pa_mpjpe_but_nonzero_mpjpe():
    rng = np.random.default_rng(1)
    gt = _skeleton(rng)
    rot = _rot([0.3, 1.0, -0.2], 0.9)
    pred = 1.7 * gt @ rot.T + np.array([0.4, -0.1, 2.0])
    assert np.all(mpjpe(pred, gt) > 10)
    assert np.allclose(pa_mpjpe(pred, gt), 0, atol=1e-6)
    s, r, t = similarity_transform(pred, gt)
    assert np.allclose(s, 1 / 1.7) and np.allclose(r, rot.T[None], atol=1e-9)
    assert np.allclose(procrustes_align(pred, gt), gt, atol=1e-9)


def test_pa_mpjpe_excludes_reflections_and_matches_hand_value():
    # a mirrored skeleton cannot be aligned by a proper rotation
    gt = _skeleton(np.random.default_rng(2), batch=1)
    assert pa_mpjpe(gt * [-1, 1, 1], gt)[0] > 1
    # 2 points: any similarity maps them exactly (only the pose *shape* counts)
    gt2 = np.array([[[0, 0, 0], [1, 0, 0.0]]])
    assert pa_mpjpe(np.array([[[5, 5, 5], [5, 7, 5.0]]]), gt2) == pytest.approx([0], abs=1e-6)
    # noise perpendicular to a symmetric configuration: the best fit is the identity
    gt3 = np.array([[[-1, 0, 0], [1, 0, 0], [0, -1, 0], [0, 1, 0.0]]])
    pred3 = gt3 + np.array([[[0, 0, 0.01], [0, 0, 0.01], [0, 0, -0.01], [0, 0, -0.01]]])
    assert pa_mpjpe(pred3, gt3) == pytest.approx([10.0], rel=1e-3)


def test_pa_mpjpe_mask_ignores_unlabelled_outlier():
    rng = np.random.default_rng(3)
    gt = _skeleton(rng, batch=2)
    pred = 0.9 * gt @ _rot([0, 0, 1], 0.4).T + 0.1
    pred[:, 5] += 3.0  # a wild joint
    mask = np.ones((2, 24))
    mask[:, 5] = 0
    assert np.allclose(pa_mpjpe(pred, gt, mask), 0, atol=1e-6)
    assert np.all(pa_mpjpe(pred, gt) > 10)


def test_pve_root_aligned_by_each_pelvis():
    rng = np.random.default_rng(4)
    verts, joints = rng.normal(size=(2, 50, 3)), rng.normal(size=(2, 24, 3))
    shift = np.array([0.5, 0.2, -1.0])
    assert np.allclose(pve(verts + shift, verts, joints + shift, joints), 0)
    assert np.allclose(pve(verts + shift, verts), 1000 * np.linalg.norm(shift))
    with pytest.raises(ValueError, match="both"):
        pve(verts, verts, joints, None)


def test_torch_inputs_and_batch_independence():
    rng = np.random.default_rng(5)
    gt, pred = _skeleton(rng), _skeleton(rng)
    ref = pa_mpjpe(pred, gt)
    out = pa_mpjpe(torch.tensor(pred, dtype=torch.float32, requires_grad=True),
                   torch.tensor(gt, dtype=torch.float32))
    assert np.allclose(out, ref, rtol=1e-4)
    assert np.allclose([pa_mpjpe(pred[i:i + 1], gt[i:i + 1])[0] for i in range(3)], ref)


def test_visibility_accuracy_per_part_and_mean():
    pred = np.array([[0.9, 0.2, 0.6], [0.1, 0.8, 0.4]])
    gt = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    per_part, mean = visibility_accuracy(pred, gt)
    assert np.allclose(per_part, [1.0, 0.5, 0.0]) and mean == pytest.approx(0.5)
    per_part, _ = visibility_accuracy(pred, gt, mask=[1, 0])
    assert np.allclose(per_part, [1.0, 1.0, 0.0])


def test_accumulator():
    rng = np.random.default_rng(6)
    gt = _skeleton(rng, batch=4)
    acc = MeshMetrics()
    acc.update(pred_joints=gt[:2] + 0.01 * np.array([1, 0, 0]) * np.arange(24)[:, None],
               gt_joints=gt[:2])
    acc.update(pred_joints=gt[2:], gt_joints=gt[2:], pred_omega=np.ones((2, 24)),
               gt_omega=np.ones((2, 24)))
    res = acc.compute()
    assert res["mpjpe"] > 0 and res["vis_acc"] == 1.0 and "pve" not in res
    assert acc.count["mpjpe"] == 4


def test_iuv_part_accuracy_counts_parts_on_gt_foreground():
    from hmr_ros.eval import iuv_part_accuracy

    gt = np.array([[[0, 1, 1, 2], [0, 2, 2, 0]]])
    pred = np.array([[[0, 1, 2, 2], [1, 0, 2, 0]]])
    r = iuv_part_accuracy(pred, gt, num_parts=3)
    assert r["foreground"] == pytest.approx(6 / 8)  # wrong: (1,0) fg called, (1,1) missed
    assert r["part"] == pytest.approx(3 / 5)  # GT fg: 1,1,2,2,2 -> hits 1, 2, 2
    np.testing.assert_allclose(r["per_part_recall"], [1 / 2, 2 / 3, np.nan])
    with pytest.raises(ValueError, match="shape"):
        iuv_part_accuracy(pred, gt[:, :1], num_parts=3)
