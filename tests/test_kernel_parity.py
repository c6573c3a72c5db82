"""The differentiable torch twins (training) against the compiled kernels (inference).

Both are checked against the float64 oracles elsewhere; this file checks them against each other
directly on the same float32 inputs, so a model trained with torch_ops behaves the same when the
runtime swaps in the kernels.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hmr_ros import kernels as K
from hmr_ros.body import procedural_body
from hmr_ros.body.constants import PARENTS
from hmr_ros.kernels import torch_ops as T


@pytest.fixture(scope="module")
def body():
    return procedural_body()


def rotations(rng, shape, scale=1.0):
    return T.axis_angle_to_matrix(torch.from_numpy(rng.normal(size=shape + (3,)) * scale)).float()


def test_lbs_parity(body):
    rng = np.random.default_rng(0)
    for B in (1, 6):
        betas = torch.from_numpy(rng.normal(size=(B, 10)).astype(np.float32))
        R = rotations(rng, (B, 24), 0.5)
        tb = body.to_torch()
        want_v, want_j = T.lbs(betas, R, tb.v_template, tb.shapedirs, tb.posedirs,
                               tb.J_regressor, PARENTS, tb.lbs_weights)
        got_v, got_j = K.lbs(betas.numpy(), R.numpy(), body.v_template, body.shapedirs,
                             body.posedirs, body.j_regressor, body.parents, body.weights)
        np.testing.assert_allclose(got_v, want_v.numpy(), atol=1e-5)
        np.testing.assert_allclose(got_j, want_j.numpy(), atol=1e-5)


def test_merge_parity():
    rng = np.random.default_rng(1)
    abs_vis, rel = rotations(rng, (8, 24)), rotations(rng, (8, 24), 0.4)
    hyp = rotations(rng, (8, 5, 24), 0.4)
    w = torch.from_numpy(rng.uniform(size=(8, 24)).astype(np.float32))
    for got, want in zip(K.kinematic_slerp(abs_vis.numpy(), rel.numpy(), w.numpy(), PARENTS),
                         T.kinematic_slerp(abs_vis, rel, w, PARENTS)):
        np.testing.assert_allclose(got, want.numpy(), atol=2e-5)
    best, score = K.match_hypotheses(abs_vis.numpy(), hyp.numpy(), w.numpy(), PARENTS)
    t_best, t_score = T.match_hypotheses(abs_vis, hyp, w, PARENTS)
    np.testing.assert_allclose(score, t_score.numpy(), atol=2e-5)
    np.testing.assert_array_equal(best, t_best.numpy())


def test_warp_and_visibility_parity(body):
    rng = np.random.default_rng(2)
    feats = rng.normal(size=(2, 8, 28, 28)).astype(np.float32)
    iuv = rng.uniform(size=(2, 3, 28, 28)).astype(np.float32)
    got = K.iuv_warp(feats, iuv, 32)
    want = T.iuv_warp(torch.from_numpy(feats), torch.from_numpy(iuv), 32).numpy()
    np.testing.assert_allclose(got, want, atol=1e-5)
    part_map = body.atlas_part_map(32)
    vis = K.part_visibility(np.ascontiguousarray(got[:, -1]), part_map)
    t_vis = T.part_visibility(torch.from_numpy(want[:, -1]), torch.tensor(part_map))
    np.testing.assert_allclose(vis, t_vis.numpy(), atol=1e-6)
    assert (vis > 0).any()  # the random IUV map does land on the charts


@pytest.mark.parametrize("name", ["axis_angle_to_matrix", "axis_angle_to_quaternion"])
def test_rotation_parity(name):
    aa = np.random.default_rng(3).normal(size=(100, 3)).astype(np.float32)
    np.testing.assert_allclose(getattr(K, name)(aa), getattr(T, name)(torch.from_numpy(aa)).numpy(),
                               atol=1e-6)
