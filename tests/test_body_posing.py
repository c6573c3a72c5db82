"""The NumPy reference LBS: smplx parity, rest-pose identity, pose correctives."""

from __future__ import annotations

import numpy as np
import pytest

from hmr_ros.body import NUM_BETAS, axis_angle_to_matrix, pose_body, procedural_body


@pytest.fixture(scope="module")
def body():
    return procedural_body()


def random_inputs(batch: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    betas = rng.normal(0.0, 1.0, (batch, NUM_BETAS))
    rotmats = axis_angle_to_matrix(rng.normal(0.0, 0.5, (batch, 24, 3)))
    return betas, rotmats


def test_axis_angle_to_matrix_is_a_rotation():
    rng = np.random.default_rng(1)
    rot = axis_angle_to_matrix(rng.normal(size=(50, 3)))
    np.testing.assert_allclose(rot @ rot.transpose(0, 2, 1), np.broadcast_to(np.eye(3), rot.shape),
                               atol=1e-12)
    np.testing.assert_allclose(np.linalg.det(rot), 1.0, atol=1e-12)
    np.testing.assert_allclose(axis_angle_to_matrix(np.zeros(3)), np.eye(3))
    # 90 degrees about z maps x to y
    np.testing.assert_allclose(axis_angle_to_matrix([0, 0, np.pi / 2]) @ [1, 0, 0], [0, 1, 0],
                               atol=1e-12)


def test_rest_pose_returns_the_shaped_template(body):
    betas = np.zeros((2, NUM_BETAS))
    betas[1, 0] = 1.0
    rotmats = np.broadcast_to(np.eye(3), (2, 24, 3, 3))
    vertices, joints = pose_body(body, betas, rotmats)
    assert vertices.shape == (2, body.num_vertices, 3) and vertices.dtype == np.float64
    np.testing.assert_allclose(vertices[0], body.v_template, atol=1e-6)
    np.testing.assert_allclose(vertices[1], body.v_template + body.shapedirs[..., 0], atol=1e-6)
    np.testing.assert_allclose(joints[0], body.rest_joints, atol=1e-6)


def test_global_rotation_rotates_everything(body):
    rotmats = np.broadcast_to(np.eye(3), (1, 24, 3, 3)).copy()
    rot = axis_angle_to_matrix([0.0, np.pi / 3, 0.0])
    rotmats[0, 0] = rot
    vertices, _ = pose_body(body, np.zeros((1, NUM_BETAS)), rotmats)
    pelvis = body.rest_joints[0]
    expected = (body.v_template - pelvis) @ rot.T + pelvis
    np.testing.assert_allclose(vertices[0], expected, atol=1e-6)


def test_matches_smplx_lbs(body):
    torch = pytest.importorskip("torch")
    smplx = pytest.importorskip("smplx")
    betas, rotmats = random_inputs(batch=3)
    vertices, joints = pose_body(body, betas, rotmats)

    def t(array):
        return torch.tensor(np.array(array), dtype=torch.float64)

    ref_vertices, ref_joints = smplx.lbs.lbs(
        t(betas), t(rotmats), t(body.v_template), t(body.shapedirs), t(body.posedirs),
        t(body.j_regressor), torch.tensor(np.array(body.parents)), t(body.weights),
        pose2rot=False,
    )
    np.testing.assert_allclose(vertices, ref_vertices.numpy(), atol=1e-5)
    np.testing.assert_allclose(joints, ref_joints.numpy(), atol=1e-5)
    assert np.abs(vertices - body.v_template).max() > 0.05  # the pose did move the body


def test_bending_the_elbow_bulges_it_outward(body):
    rotmats = np.broadcast_to(np.eye(3), (1, 24, 3, 3)).copy()
    rotmats[0, 18] = axis_angle_to_matrix([0.0, -np.pi / 2, 0.0])
    # the pose corrective of this pose, per vertex (what LBS adds before skinning)
    feature = (rotmats[0, 1:] - np.eye(3)).reshape(-1)  # 207
    offset = np.einsum("p,pvc->vc", feature, body.posedirs.reshape(207, -1, 3))  # V x 3
    size = np.linalg.norm(offset, axis=1)
    assert 0.005 < size.max() < 0.03
    moved = size > 1e-6
    assert set(np.unique(body.part[moved])) == {16, 18}  # upper arm and forearm only
    # outward: away from the bone line of the vertex's own part
    joints = body.rest_joints
    start = joints[body.part[moved]]
    end = joints[np.where(body.part[moved] == 16, 18, 20)]
    axis = (end - start) / np.linalg.norm(end - start, axis=1, keepdims=True)
    rel = body.v_template[moved] - start
    radial = rel - np.einsum("vc,vc->v", rel, axis)[:, None] * axis
    assert np.all(np.einsum("vc,vc->v", offset[moved], radial) > 0)


@pytest.mark.parametrize(
    "betas, rotmats, match",
    [
        (np.zeros((1, 9)), np.zeros((1, 24, 3, 3)), "betas"),
        (np.zeros((1, NUM_BETAS)), np.zeros((1, 23, 3, 3)), "rotmats"),
        (np.zeros((2, NUM_BETAS)), np.zeros((1, 24, 3, 3)), "rotmats"),
    ],
)
def test_wrong_input_shapes_raise(body, betas, rotmats, match):
    with pytest.raises(ValueError, match=match):
        pose_body(body, betas, rotmats)
