"""The procedural body: SMPL layout, closed outward parts, sane shape space and skinning."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from hmr_ros.body import NUM_BETAS, PARENTS, BodyModel, BodyModelError, procedural_body
from hmr_ros.body.procedural import _REST_JOINTS

FIELDS = ("v_template", "shapedirs", "posedirs", "j_regressor", "weights", "faces", "parents")


@pytest.fixture(scope="module")
def body() -> BodyModel:
    return procedural_body()


def part_faces(model: BodyModel, part: int) -> np.ndarray:
    face_part = model.part[model.faces]  # F x 3
    return model.faces[(face_part == part).all(axis=1)]


def signed_volume(vertices: np.ndarray, faces: np.ndarray) -> float:
    v0, v1, v2 = (vertices[faces[:, k]].astype(np.float64) for k in range(3))
    return float(np.einsum("fi,fi->", v0, np.cross(v1, v2)) / 6.0)


def height(vertices: np.ndarray) -> float:
    return float(np.ptp(vertices[:, 1]))


def test_shapes_and_dtypes(body):
    v = body.num_vertices
    assert v >= 5000
    assert body.v_template.shape == (v, 3) and body.v_template.dtype == np.float32
    assert body.shapedirs.shape == (v, 3, NUM_BETAS) and body.shapedirs.dtype == np.float32
    assert body.posedirs.shape == (207, v * 3) and body.posedirs.dtype == np.float32
    assert body.j_regressor.shape == (24, v) and body.j_regressor.dtype == np.float32
    assert body.weights.shape == (v, 24) and body.weights.dtype == np.float32
    assert body.faces.shape[1] == 3 and body.faces.dtype == np.int64
    assert body.parents.dtype == np.int64 and np.array_equal(body.parents, PARENTS)
    assert body.part.shape == (v,) and np.array_equal(body.part, body.weights.argmax(1))
    assert body.name == "procedural(seed=0)"


def test_every_part_has_vertices(body):
    assert np.all(np.bincount(body.part, minlength=24) > 100)


def test_deterministic_per_seed():
    a, b, c = procedural_body(seed=0), procedural_body(seed=0), procedural_body(seed=7)
    for key in FIELDS:
        assert getattr(a, key).tobytes() == getattr(b, key).tobytes(), key
    assert not np.array_equal(a.v_template, c.v_template)
    assert np.array_equal(procedural_body(seed=7).v_template, c.v_template)


def test_model_is_read_only(body):
    with pytest.raises(dataclasses.FrozenInstanceError):
        body.name = "other"
    with pytest.raises(ValueError):
        body.v_template[0, 0] = 1.0


@pytest.mark.parametrize("part", range(24))
def test_each_part_is_closed_and_consistently_wound(body, part):
    faces = part_faces(body, part)
    assert len(faces) > 0
    directed = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
    # every undirected edge in exactly two faces ...
    _, undirected_count = np.unique(np.sort(directed, axis=1), axis=0, return_counts=True)
    assert np.all(undirected_count == 2)
    # ... traversed once in each direction (consistent orientation)
    _, directed_count = np.unique(directed, axis=0, return_counts=True)
    assert np.all(directed_count == 1)


def test_all_faces_stay_within_one_part(body):
    face_part = body.part[body.faces]
    assert np.all(face_part == face_part[:, :1])


@pytest.mark.parametrize("part", range(24))
def test_parts_face_outward(body, part):
    faces = part_faces(body, part)
    assert signed_volume(body.v_template, faces) > 0
    # and per face: the normal points away from the part's centroid axis (no inward patches)
    v = body.v_template.astype(np.float64)
    normal = np.cross(v[faces[:, 1]] - v[faces[:, 0]], v[faces[:, 2]] - v[faces[:, 0]])
    centre = v[body.part == part].mean(axis=0)
    outward = np.einsum("fc,fc->f", normal, v[faces].mean(axis=1) - centre)
    assert np.mean(outward > 0) > 0.95


def test_weights_are_convex_and_blend_near_joints(body):
    assert body.weights.min() >= 0
    np.testing.assert_allclose(body.weights.sum(axis=1), 1.0, atol=1e-6)
    # blending: many vertices have two influences, and the own part always dominates
    assert np.mean((body.weights > 0.01).sum(axis=1) >= 2) > 0.2
    own = body.weights[np.arange(body.num_vertices), body.part]
    assert own.min() > 0.5
    # smooth: the weight of the parent changes little between neighbouring rings of a tube
    left_forearm = body.part == 18
    parent_w = body.weights[left_forearm, 16]
    assert parent_w.max() > 0.4 and parent_w.min() == 0.0
    ring = body.weights[left_forearm, 16][1:-1].reshape(-1, 16)[:, 0]
    assert np.abs(np.diff(ring)).max() < 0.3


def test_j_regressor_reproduces_rest_joints(body):
    assert body.j_regressor.min() >= 0
    np.testing.assert_allclose(body.j_regressor.sum(axis=1), 1.0, atol=1e-6)
    np.testing.assert_allclose(body.rest_joints, _REST_JOINTS, atol=1e-6)


def test_rest_pose_is_an_upright_t_pose(body):
    v, joints = body.v_template, body.rest_joints
    assert 1.5 < height(v) < 1.9
    # y up: head above pelvis above feet; arms horizontal, left arm on +x (SMPL)
    assert joints[15, 1] > joints[0, 1] > joints[10, 1]
    assert joints[20, 0] > 0.5 and joints[21, 0] < -0.5
    assert abs(joints[20, 1] - joints[16, 1]) < 0.05
    # facing +z: the toes point forward
    assert joints[10, 2] > joints[7, 2]


def test_shape_components_change_height_and_girth(body):
    base = body.v_template.astype(np.float64)
    dh = [height(base + body.shapedirs[..., k]) - height(base) for k in range(NUM_BETAS)]
    assert max(dh) > 0.03  # some beta changes height by > 3 cm per unit
    assert dh[0] > 0.03
    belly = body.part == 3

    def girth(v):
        return np.ptp(v[belly, 0]) + np.ptp(v[belly, 2])

    assert girth(base + body.shapedirs[..., 1]) - girth(base) > 0.02
    # every component changes the body, and no two components are the same change
    flat = body.shapedirs.reshape(-1, NUM_BETAS).astype(np.float64)
    assert np.all(np.linalg.norm(flat, axis=0) > 1e-3)
    assert np.linalg.matrix_rank(flat, tol=1e-6) == NUM_BETAS


def test_betas_within_three_sigma_stay_humanoid(body):
    rng = np.random.default_rng(0)
    for betas in rng.uniform(-3, 3, size=(20, NUM_BETAS)):
        v = body.v_template + body.shapedirs @ betas
        assert 1.2 < height(v) < 2.2
        for part in range(24):  # no tube turned inside out or collapsed
            assert signed_volume(v, part_faces(body, part)) > 1e-6


def test_pose_correctives_are_small_local_bulges(body):
    posedirs = body.posedirs.reshape(207, body.num_vertices, 3)
    assert np.abs(posedirs).max() > 1e-3
    assert np.abs(posedirs).max() <= 0.02
    # the left elbow's features (joint 18) only move the upper arm and forearm around it
    moved = np.abs(posedirs[9 * 17 : 9 * 18]).sum(axis=(0, 2)) > 0
    assert moved.any()
    assert set(np.unique(body.part[moved])) == {16, 18}


def test_validate_names_the_field(body):
    arrays = {key: np.array(getattr(body, key)) for key in FIELDS}
    arrays["shapedirs"] = arrays["shapedirs"][..., :5]
    with pytest.raises(BodyModelError, match="shapedirs.*expected"):
        BodyModel(**arrays, name="broken")
    arrays["shapedirs"] = np.array(body.shapedirs)
    arrays["parents"] = np.zeros(24, dtype=np.int64)
    with pytest.raises(BodyModelError, match="parents"):
        BodyModel(**arrays)
    arrays["parents"] = PARENTS.copy()
    arrays["faces"] = arrays["faces"] + body.num_vertices
    with pytest.raises(BodyModelError, match="faces"):
        BodyModel(**arrays)


def test_to_torch_buffers(body):
    torch = pytest.importorskip("torch")
    module = body.to_torch()
    assert isinstance(module, torch.nn.Module)
    assert module.posedirs.shape == (207, body.num_vertices * 3)
    assert module.parents.dtype == torch.long and module.faces.dtype == torch.long
    np.testing.assert_array_equal(module.J_regressor.numpy(), body.j_regressor)
    assert {name for name, _ in module.named_buffers()} >= {
        "v_template", "shapedirs", "posedirs", "J_regressor", "lbs_weights", "parents", "faces"
    }
    assert module.to(torch.float64).v_template.dtype == torch.float64
