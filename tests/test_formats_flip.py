"""Horizontal-flip augmentation: involution, and consistency with the posed body."""

from __future__ import annotations

import numpy as np
import pytest

from hmr_ros.body import FLIP_PERMUTATION, pose_body, procedural_body
from hmr_ros.body.posing import axis_angle_to_matrix
from hmr_ros.data.formats import (AugmentConfig, AugmentParams, crop_sample, flip_axis_angle,
                                  flip_joints3d, flip_keypoints2d, flip_per_part, flip_rotmats,
                                  sample_params)


@pytest.fixture(scope="module")
def body():
    return procedural_body()


def _pose(seed=0, batch=3):
    return np.random.default_rng(seed).normal(0, 0.4, (batch, 24, 3))


def test_flip_twice_is_identity():
    rng = np.random.default_rng(0)
    aa = _pose()
    rot = axis_angle_to_matrix(aa)
    pts, kp = rng.normal(size=(3, 24, 3)), rng.normal(size=(3, 24, 2))
    vis = rng.uniform(size=(3, 24))
    assert np.allclose(flip_rotmats(flip_rotmats(rot)), rot)
    assert np.allclose(flip_axis_angle(flip_axis_angle(aa)), aa)
    assert np.allclose(flip_axis_angle(flip_axis_angle(aa.reshape(3, 72))), aa.reshape(3, 72))
    assert np.allclose(flip_joints3d(flip_joints3d(pts)), pts)
    assert np.allclose(flip_keypoints2d(flip_keypoints2d(kp)), kp)
    assert np.allclose(flip_per_part(flip_per_part(vis)), vis)
    assert np.array_equal(FLIP_PERMUTATION[FLIP_PERMUTATION], np.arange(24))


def test_flipped_rotmats_are_rotations_and_match_axis_angle():
    aa = _pose(1)
    flipped = flip_rotmats(axis_angle_to_matrix(aa))
    assert np.allclose(flipped @ np.swapaxes(flipped, -1, -2), np.eye(3), atol=1e-9)
    assert np.allclose(np.linalg.det(flipped), 1)
    assert np.allclose(axis_angle_to_matrix(flip_axis_angle(aa)), flipped, atol=1e-9)


@pytest.mark.parametrize("with_betas", [False, True])
def test_flipped_pose_gives_mirrored_permuted_joints_and_vertices(body, with_betas):
    """LBS(flip(pose)) = M · LBS(pose) with left/right swapped -- the procedural body is
    mirror-symmetric in x (shape components included), as SMPL is up to its asymmetries."""
    aa = _pose(2)
    betas = np.random.default_rng(3).normal(0, 1, (3, 10)) * with_betas
    verts, joints = pose_body(body, betas, axis_angle_to_matrix(aa))
    fverts, fjoints = pose_body(body, betas, flip_rotmats(axis_angle_to_matrix(aa)))
    assert np.allclose(fjoints, flip_joints3d(joints), atol=1e-5)
    # vertices: the mirrored mesh, matched by nearest neighbour (no vertex permutation needed)
    from scipy.spatial import cKDTree

    d, _ = cKDTree(verts[0] * [-1, 1, 1]).query(fverts[0])
    assert d.max() < 1e-4


def test_crop_sample_flip_is_consistent_with_projection():
    """Keypoints = weak-perspective projection of the joints stays true after flip+rotation."""
    rng = np.random.default_rng(4)
    joints = rng.normal(0, 0.3, (24, 3)) + [0, 0, 5]
    scale, center, box = 40.0, np.array([150.0, 100.0]), 120.0
    kp_px = center + scale * joints[:, :2]  # orthographic "camera" around the box centre
    img = np.zeros((200, 300, 3), np.uint8)
    for flip in (False, True):
        params = AugmentParams(rotation=25.0, flip=flip)
        out = crop_sample(img, center, box, 64, params, None, keypoints_px=kp_px,
                          joints3d=joints)
        s = 2 * scale / box  # normalised units per metre
        assert np.allclose(out["keypoints2d"], s * out["joints3d"][:, :2], atol=1e-9)


def test_sample_params_respects_probabilities():
    rng = np.random.default_rng(0)
    never = AugmentConfig(rotation_prob=0, flip_prob=0, occluder_prob=0)
    draws = [sample_params(never, rng) for _ in range(50)]
    assert not any(d.flip or d.rotation or d.occluders for d in draws)
    always = AugmentConfig(rotation_prob=1, flip_prob=1, occluder_prob=1)
    draws = [sample_params(always, rng) for _ in range(50)]
    assert all(d.flip and d.occluders >= 1 and abs(d.rotation) <= 30 for d in draws)
    assert sample_params(None, rng).flip is False
    with pytest.raises(ValueError, match="flip_prob"):
        AugmentConfig(flip_prob=2)


def test_occluders_and_colour_jitter_change_pixels_only_inside_range():
    img = np.full((200, 300, 3), 128, np.uint8)
    cfg = AugmentConfig(occluder_prob=1.0, occluder_size=(0.3, 0.5))
    params = AugmentParams(gains=(1.1, 0.9, 1.0), occluders=2, seed=7)
    out = crop_sample(img, (150, 100), 100, 64, params, cfg)["crop"]
    assert out.dtype == np.uint8 and out.shape == (64, 64, 3)
    plain = (out == np.array([141, 115, 128])).all(-1)
    assert 0.05 < 1 - plain.mean() < 0.95  # some but not all pixels occluded
