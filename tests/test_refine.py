"""Refinement of a regressed body to 2D keypoints: forward kinematics agrees with the LBS
kernel, a perturbed pose is pulled back onto the keypoints, the prior holds unconstrained
joints, and unusable keypoints leave the body alone."""

from __future__ import annotations

import numpy as np
import pytest

from hmr_ros.body import load_body_model
from hmr_ros.kernels import LbsModel
from hmr_ros.runtime.refine import (COCO17_BODY, SMPL_FOR_COCO17_BODY, RefineParams,
                                    _rodrigues, forward_kinematics, refine_person)

K = np.array([[500.0, 0, 320], [0, 500.0, 240], [0, 0, 1]])


@pytest.fixture(scope="module")
def body():
    model = load_body_model("procedural")
    return LbsModel.from_body(model)


def _pose(seed, scale=0.3):
    g = np.random.default_rng(seed)
    w = g.normal(0, scale, (24, 3))
    w[0] = [np.pi, 0.0, 0.0]  # upright in the camera frame (y down): rotated about x
    return _rodrigues(w).astype(np.float32)


def _keypoints(joints_cam):
    kp = np.zeros((17, 3))
    P = joints_cam[SMPL_FOR_COCO17_BODY]
    kp[COCO17_BODY, 0] = K[0, 0] * P[:, 0] / P[:, 2] + K[0, 2]
    kp[COCO17_BODY, 1] = K[1, 1] * P[:, 1] / P[:, 2] + K[1, 2]
    kp[COCO17_BODY, 2] = 0.9
    return kp


def _reprojection(rel, t, rest, kp):
    _, p = forward_kinematics(rel.astype(np.float64), rest, t)
    return np.abs(_keypoints(p)[COCO17_BODY, :2] - kp[COCO17_BODY, :2]).mean()


def test_forward_kinematics_matches_the_lbs_kernel(body):
    rel = _pose(0)
    betas = np.zeros((1, 10), np.float32)
    _, joints = body(betas, rel[None])
    _, rest = body(betas, np.broadcast_to(np.eye(3, dtype=np.float32), (1, 24, 3, 3)).copy())
    _, p = forward_kinematics(rel.astype(np.float64), rest[0].astype(np.float64), np.zeros(3))
    assert np.abs(p - joints[0]).max() < 1e-4


def test_refinement_pulls_a_perturbed_pose_onto_the_keypoints(body):
    betas = np.zeros((1, 10), np.float32)
    _, rest = body(betas, np.broadcast_to(np.eye(3, dtype=np.float32), (1, 24, 3, 3)).copy())
    rest = rest[0].astype(np.float64)
    truth = _pose(1)
    t = np.array([0.1, -0.2, 4.0])
    _, p = forward_kinematics(truth.astype(np.float64), rest, t)
    kp = _keypoints(p)
    start = truth @ _pose(2, scale=0.15)  # the regressor's guess: every joint off a little
    start[0] = truth[0]
    before = _reprojection(start, t + [0.05, 0.0, 0.2], rest, kp)
    rel, t_new = refine_person(start, rest, t + [0.05, 0.0, 0.2], kp, K,
                               RefineParams(iterations=10, prior_weight=1e-3))
    after = _reprojection(rel, t_new, rest, kp)
    assert before > 5.0 and after < 0.25 * before
    # joints no keypoint constrains (head, hands, feet) stay where the regressor put them
    for j in (15, 22, 23, 10, 11):
        assert np.abs(rel[j] - start[j]).max() < 1e-3


def test_unusable_keypoints_leave_the_body_alone(body):
    rest = np.zeros((24, 3))
    rel = _pose(3)
    kp = np.zeros((17, 3))
    assert refine_person(rel, rest, np.array([0, 0, 3.0]), kp, K) is None  # no confident points
    kp[:, 2] = 0.9
    kp[5, 0] = np.nan
    assert refine_person(rel, rest, np.array([0, 0, 3.0]), kp, K) is None
    assert refine_person(rel, rest, np.array([0, 0, 3.0]), np.zeros((5, 3)), K) is None
