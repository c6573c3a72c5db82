"""The CPU rasteriser against a brute-force float64 reference and geometric identities."""

from __future__ import annotations

import numpy as np
import pytest

from hmr_ros import kernels as K

INTR = np.array([[40.0, 0, 16.0], [0, 40.0, 12.0], [0, 0, 1]], np.float32)


def reference(vertices, faces, Kmat, H, W, near=0.01):
    """Per pixel centre, per face: ray-triangle intersection in float64; nearest wins."""
    fid = np.full((H, W), -1)
    depth = np.zeros((H, W))
    Kinv = np.linalg.inv(Kmat.astype(np.float64))
    v = vertices.astype(np.float64)
    for y in range(H):
        for x in range(W):
            ray = Kinv @ np.array([x + 0.5, y + 0.5, 1.0])
            best = np.inf
            for f, (a, b, c) in enumerate(faces):
                if min(v[a, 2], v[b, 2], v[c, 2]) < near:
                    continue
                M = np.stack([v[a], v[b], v[c]], axis=1)  # point = M @ bary, bary sums to 1
                try:
                    coeff = np.linalg.solve(M, ray)  # ray * t = M @ w  ->  w = t * bary
                except np.linalg.LinAlgError:
                    continue
                if (coeff < -1e-12).any() or coeff.sum() <= 0:
                    continue
                z = 1.0 / coeff.sum()  # ray has z = 1, so t = depth
                if z < best - 1e-9:
                    best, fid[y, x], depth[y, x] = z, f, z
    return fid, depth


def random_scene(rng, n_tri):
    centres = rng.uniform([-0.6, -0.5, 1.5], [0.6, 0.5, 4.0], size=(n_tri, 1, 3))
    verts = (centres + rng.normal(scale=0.35, size=(n_tri, 3, 3))).reshape(-1, 3)
    return verts.astype(np.float32), np.arange(3 * n_tri, dtype=np.int32).reshape(n_tri, 3)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_brute_force_reference(seed):
    verts, faces = random_scene(np.random.default_rng(seed), 12)
    fid, bary, depth = K.rasterize(verts, faces, INTR, 24, 32)
    want_fid, want_depth = reference(verts, faces, INTR, 24, 32)
    agree = fid == want_fid
    assert agree.mean() > 0.99  # only pixel centres exactly on shared edges may differ
    hit = agree & (fid >= 0)
    np.testing.assert_allclose(depth[hit], want_depth[hit], rtol=1e-4)
    assert (fid >= 0).sum() > 50


def test_barycentrics_are_perspective_correct():
    verts, faces = random_scene(np.random.default_rng(5), 6)
    fid, bary, depth = K.rasterize(verts, faces, INTR, 24, 32)
    ys, xs = np.nonzero(fid >= 0)
    points = np.einsum("pk,pkc->pc", bary[ys, xs], verts[faces[fid[ys, xs]]])  # 3D, camera frame
    proj = (INTR @ points.T).T
    np.testing.assert_allclose(proj[:, 0] / proj[:, 2], xs + 0.5, atol=2e-3)
    np.testing.assert_allclose(proj[:, 1] / proj[:, 2], ys + 0.5, atol=2e-3)
    np.testing.assert_allclose(points[:, 2], depth[ys, xs], rtol=1e-5)
    np.testing.assert_allclose(bary[ys, xs].sum(-1), 1.0, atol=1e-5)
    assert (bary[ys, xs] >= -1e-6).all()


def test_nearer_triangle_occludes_and_windings_both_draw():
    quad = np.array([[-1, -1, 0], [1, -1, 0], [1, 1, 0], [-1, 1, 0]], np.float32)
    far, near = quad * 3 + [0, 0, 4], quad * 0.5 + [0, 0, 2]
    verts = np.concatenate([far, near]).astype(np.float32)
    faces = np.array([[0, 1, 2], [0, 2, 3], [4, 6, 5], [4, 7, 6]], np.int32)  # near one CW
    fid, _, depth = K.rasterize(verts, faces, INTR, 24, 32)
    assert set(np.unique(fid[12, 14:18])) <= {2, 3}  # centre: the near quad
    assert depth[12, 16] == pytest.approx(2.0, rel=1e-5)
    assert set(np.unique(fid[12, 2:6])) <= {0, 1}  # side: only the far quad covers it


def test_faces_behind_the_near_plane_are_skipped():
    v = np.array([[-1, -1, -2], [1, -1, 3], [0, 1, 3]], np.float32)
    fid, _, _ = K.rasterize(v, np.array([[0, 1, 2]], np.int32), INTR, 24, 32)
    assert (fid == -1).all()


def test_interpolate_attributes():
    verts, faces = random_scene(np.random.default_rng(7), 4)
    fid, bary, depth = K.rasterize(verts, faces, INTR, 24, 32)
    z = K.interpolate(verts[:, 2:3], faces, fid, bary)[..., 0]
    hit = fid >= 0
    # z is not affine in screen space; its perspective-correct interpolation is the depth
    np.testing.assert_allclose(z[hit], depth[hit], rtol=1e-5)
    assert (z[~hit] == 0).all()


def test_bad_inputs_are_clear():
    v = np.zeros((3, 3), np.float32)
    f = np.array([[0, 1, 2]], np.int32)
    with pytest.raises(K.KernelError, match="faces must be int32"):
        K.rasterize(v, f.astype(np.int64), INTR, 4, 4)
    with pytest.raises(K.KernelError, match="outside"):
        K.rasterize(v, f + 1, INTR, 4, 4)
    with pytest.raises(K.KernelError, match="image size"):
        K.rasterize(v, f, INTR, 0, 4)
    with pytest.raises(K.KernelError, match="intrinsics"):
        K.rasterize(v, f, np.full((3, 3), np.nan), 4, 4)
