"""Occluder meshes: boxes, bars and blobs, each with vertex normals and texture coordinates.

Boxes keep 4 vertices per side so interpolated normals stay flat (a box lit with averaged
corner normals looks like a pillow). Blobs are subdivided icospheres scaled into ellipsoids with
a low-frequency radial bump, so their silhouettes are not all perfect ellipses. Every mesh
carries a 2D texture coordinate per vertex (metres in the object's own frame) for the stripe
and checker textures of ``appearance``.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Tuple

import numpy as np

__all__ = ["Mesh", "box_mesh", "icosphere", "blob_mesh", "vertex_normals"]


@dataclass(frozen=True)
class Mesh:
    """vertices V x 3 float64, faces F x 3 int64, normals V x 3 (unit), texcoords V x 2."""

    vertices: np.ndarray
    faces: np.ndarray
    normals: np.ndarray
    texcoords: np.ndarray

    def transformed(self, rotation: np.ndarray, translation: np.ndarray) -> "Mesh":
        """The mesh moved by ``x -> R x + t`` (texcoords travel with the surface)."""
        r = np.asarray(rotation, np.float64)
        return Mesh(self.vertices @ r.T + np.asarray(translation, np.float64), self.faces,
                    self.normals @ r.T, self.texcoords)


def box_mesh(half_extents) -> Mesh:
    """Axis-aligned box centred at the origin: 24 vertices (4 per side), 12 faces."""
    h = np.asarray(half_extents, np.float64)
    verts, normals, tex, faces = [], [], [], []
    for axis in range(3):
        for sign in (-1.0, 1.0):
            a, b = [k for k in range(3) if k != axis]
            base = len(verts)
            for ca, cb in ((-1, -1), (1, -1), (1, 1), (-1, 1)):
                p = np.zeros(3)
                p[axis], p[a], p[b] = sign * h[axis], ca * h[a], cb * h[b]
                n = np.zeros(3)
                n[axis] = sign
                verts.append(p)
                normals.append(n)
                tex.append((p[a], p[b]))
            faces += [(base, base + 1, base + 2), (base, base + 2, base + 3)]
    return Mesh(np.array(verts), np.array(faces, np.int64), np.array(normals), np.array(tex))


@lru_cache(maxsize=4)
def _icosphere(subdivisions: int) -> Tuple[np.ndarray, np.ndarray]:
    t = (1.0 + 5 ** 0.5) / 2.0
    v = [(-1, t, 0), (1, t, 0), (-1, -t, 0), (1, -t, 0), (0, -1, t), (0, 1, t), (0, -1, -t),
         (0, 1, -t), (t, 0, -1), (t, 0, 1), (-t, 0, -1), (-t, 0, 1)]
    f = [(0, 11, 5), (0, 5, 1), (0, 1, 7), (0, 7, 10), (0, 10, 11), (1, 5, 9), (5, 11, 4),
         (11, 10, 2), (10, 7, 6), (7, 1, 8), (3, 9, 4), (3, 4, 2), (3, 2, 6), (3, 6, 8),
         (3, 8, 9), (4, 9, 5), (2, 4, 11), (6, 2, 10), (8, 6, 7), (9, 8, 1)]
    verts = [np.array(p, np.float64) / np.linalg.norm(p) for p in v]
    faces = f
    for _ in range(subdivisions):
        cache: dict = {}

        def mid(i: int, j: int) -> int:
            key = (min(i, j), max(i, j))
            if key not in cache:
                m = verts[i] + verts[j]
                verts.append(m / np.linalg.norm(m))
                cache[key] = len(verts) - 1
            return cache[key]

        new = []
        for a, b, c in faces:
            ab, bc, ca = mid(a, b), mid(b, c), mid(c, a)
            new += [(a, ab, ca), (b, bc, ab), (c, ca, bc), (ab, bc, ca)]
        faces = new
    return np.array(verts), np.array(faces, np.int64)


def icosphere(subdivisions: int = 2) -> Tuple[np.ndarray, np.ndarray]:
    """Unit sphere: (vertices V x 3, faces F x 3); 2 subdivisions = 162 vertices, 320 faces."""
    v, f = _icosphere(int(subdivisions))
    return v.copy(), f.copy()


def vertex_normals(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Area-weighted unit vertex normals (V x 3) of a triangle mesh."""
    v = np.asarray(vertices, np.float64)
    tri = v[faces]
    fn = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])  # F x 3, |fn| = 2 area
    out = np.zeros_like(v)
    for k in range(3):
        for c in range(3):
            out[:, c] += np.bincount(faces[:, k], fn[:, c], minlength=len(v))
    return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)


def blob_mesh(radii, bumps: np.ndarray, subdivisions: int = 2) -> Mesh:
    """Ellipsoid with semi-axes ``radii`` and radial bumps ``1 + Σ a_k cos(d_k · p + φ_k)``.

    bumps: K x 5 rows (a, dx, dy, dz, phase); directions are used as given (scale = frequency).
    """
    unit, faces = _icosphere(int(subdivisions))
    b = np.asarray(bumps, np.float64).reshape(-1, 5)
    scale = 1.0 + np.sum(b[:, 0] * np.cos(unit @ b[:, 1:4].T + b[:, 4]), axis=1)
    verts = unit * scale[:, None] * np.asarray(radii, np.float64)
    tex = np.stack([np.arctan2(unit[:, 0], unit[:, 2]) * radii[0],
                    np.arcsin(np.clip(unit[:, 1], -1, 1)) * radii[1]], axis=1)
    return Mesh(verts, faces.copy(), vertex_normals(verts, faces), tex)
