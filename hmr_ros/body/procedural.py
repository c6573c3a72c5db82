"""The package's own SMPL-layout body, generated from a few numbers (no licensed data).

Tests, demos and the bundled model need a body with SMPL's joints, shape space and pose
correctives, but SMPL itself may not be shipped. This body is a "capsule figure": one closed
tube per part around its bone (``skeleton.bone_axes``), with elliptical cross-sections whose
radii vary linearly along the bone and hemispherical-ish caps. Everything SMPL has is there in
the same layout: 24 joints in a T-pose (y up, metres, facing +z, origin near the pelvis as in
SMPL), 10 shape components, pose correctives ``posedirs`` (207, V*3), smooth skinning weights and
a joint regressor.

Vertex positions are *linear* in the joints, tip lengths and radii (the tube frames are fixed by
the rest pose), so each shape component is exact: ``shapedirs[..., k]`` is the mesh of the body
edited by component k minus the rest mesh.
"""

from __future__ import annotations

from typing import Any, Tuple

import numpy as np

from .constants import JOINT_NAMES, NUM_BETAS, NUM_JOINTS, NUM_POSE_FEATURES, PARENTS
from .model import BodyModel
from .skeleton import AXIS_CHILD, bone_axes, cross_section_frames

__all__ = ["procedural_body", "SHAPE_COMPONENTS"]

#: rest joints (metres), close to SMPL's neutral T-pose, mirror-symmetric in x (+x = left)
_REST_JOINTS = np.array([
    [0.000, -0.230, 0.020],  # pelvis
    [0.070, -0.320, 0.010], [-0.070, -0.320, 0.010],  # hips
    [0.000, -0.110, 0.000],  # spine1
    [0.100, -0.700, 0.010], [-0.100, -0.700, 0.010],  # knees
    [0.000, 0.030, 0.020],  # spine2
    [0.090, -1.090, -0.030], [-0.090, -1.090, -0.030],  # ankles
    [0.000, 0.080, 0.030],  # spine3
    [0.115, -1.150, 0.090], [-0.115, -1.150, 0.090],  # feet (toe base)
    [0.000, 0.290, -0.010],  # neck
    [0.070, 0.200, 0.000], [-0.070, 0.200, 0.000],  # collars
    [0.000, 0.360, 0.040],  # head
    [0.170, 0.220, -0.020], [-0.170, 0.220, -0.020],  # shoulders
    [0.430, 0.210, -0.040], [-0.430, 0.210, -0.040],  # elbows
    [0.680, 0.220, -0.040], [-0.680, 0.220, -0.040],  # wrists
    [0.770, 0.210, -0.050], [-0.770, 0.210, -0.050],  # hands
])

#: how far the leaf parts reach past their joint, and the pelvis below its joint (metres)
_TIPS = {"pelvis": 0.08, "foot": 0.06, "head": 0.10, "hand": 0.08}

#: cross-section radii (r1, r2) at the start and end of each part's tube, metres. r1 is along
#: d1 of ``skeleton.cross_section_frames`` (width for torso and legs, depth for arms).
_RADII = {
    "pelvis": ((0.120, 0.090), (0.135, 0.095)),
    "hip": ((0.075, 0.080), (0.052, 0.055)),  # thigh
    "spine1": ((0.140, 0.095), (0.140, 0.095)),  # belly
    "knee": ((0.050, 0.052), (0.038, 0.040)),  # shin
    "spine2": ((0.145, 0.100), (0.155, 0.105)),
    "ankle": ((0.040, 0.040), (0.045, 0.025)),  # foot
    "spine3": ((0.160, 0.105), (0.120, 0.080)),  # chest
    "foot": ((0.045, 0.022), (0.040, 0.018)),  # toes
    "neck": ((0.050, 0.050), (0.050, 0.050)),
    "collar": ((0.050, 0.055), (0.055, 0.055)),
    "head": ((0.075, 0.090), (0.070, 0.080)),
    "shoulder": ((0.050, 0.050), (0.040, 0.040)),  # upper arm
    "elbow": ((0.040, 0.038), (0.030, 0.025)),  # forearm
    "wrist": ((0.040, 0.015), (0.045, 0.014)),  # palm (palms face down in the T-pose)
    "hand": ((0.042, 0.012), (0.035, 0.008)),  # fingers
}

_CAP = 1.0  #: cap length / mean cross-section radius at that end
_BLEND = 0.08  #: metres over which skinning blends into the neighbouring joint
_BLEND_MAX = 0.45  #: largest weight a neighbour gets, so argmax stays on the tube's own part
_BULGE = 0.01  #: metres of radial bulge per unit of -trace(R - I) of the joint's rotation

_TORSO = [0, 3, 6, 9]
_LIMBS = [1, 2, 4, 5, 16, 17, 18, 19]


def _kind(name: str) -> str:
    return name.replace("left_", "").replace("right_", "")


def _rest_params() -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Bone offsets (24 x 3, joint minus parent), tips (24), radii (24 x 2 x 2)."""
    offsets = _REST_JOINTS.copy()
    offsets[1:] -= _REST_JOINTS[PARENTS[1:]]
    tips = np.array([_TIPS.get(_kind(n), 0.0) for n in JOINT_NAMES])
    radii = np.array([_RADII[_kind(n)] for n in JOINT_NAMES], dtype=np.float64)
    return offsets, tips, radii


#: the 10 shape components: (name, edits for beta = +1). An edit (array, index, factor)
#: scales ``array[index]`` of the rest parameters, array in {"offsets", "tips", "radii"}
#: (offsets: bone vectors joint - parent; radii: part x (start, end) x (r1, r2)).
SHAPE_COMPONENTS: Tuple[Tuple[str, Tuple[Tuple[str, Any, float], ...]], ...] = (
    ("stature", (("offsets", ..., 1.04), ("tips", ..., 1.04), ("radii", ..., 1.04))),
    ("girth", (("radii", _TORSO, 1.10), ("radii", _LIMBS + [12], 1.06))),
    ("leg length", (("offsets", [4, 5, 7, 8], 1.06),)),
    ("torso length", (("offsets", [3, 6, 9, 12], 1.06),)),
    ("shoulder width", (("offsets", ([13, 14, 16, 17], 0), 1.12),)),
    ("arm length", (("offsets", [18, 19, 20, 21, 22, 23], 1.07), ("tips", [22, 23], 1.07))),
    ("hip width", (("offsets", ([1, 2], 0), 1.15), ("radii", (0, ..., 0), 1.06))),
    ("chest and belly depth", (("radii", ([3, 6, 9], ..., 1), 1.12), ("radii", (0, ..., 1), 1.05))),
    ("limb muscle", (("radii", _LIMBS, 1.08), ("radii", _TORSO, 0.98))),
    ("head size", (("radii", [12, 15], 1.06), ("tips", 15, 1.07), ("offsets", 15, 1.05))),
)


def _ring_layout(body_rings: int, cap_rings: int) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per ring along a tube: fraction t along the bone, cap offset sigma (in cap lengths,
    negative before the start) and radial factor f. Start cap, body, end cap: R rings."""
    phi = 0.5 * np.pi * np.arange(1, cap_rings + 1) / (cap_rings + 1)  # from the pole outwards
    t = np.concatenate([np.zeros(cap_rings), np.linspace(0, 1, body_rings), np.ones(cap_rings)])
    sigma = np.concatenate([-np.cos(phi), np.zeros(body_rings), np.cos(phi[::-1])])
    f = np.concatenate([np.sin(phi), np.ones(body_rings), np.sin(phi[::-1])])
    return t, sigma, f


def _tube_ends(offsets: np.ndarray, tips: np.ndarray, axes: np.ndarray):
    """Start and end point of every part's tube: 24 x 3 each (linear in offsets, tips)."""
    joints = np.zeros_like(offsets)
    for i in range(NUM_JOINTS):
        joints[i] = offsets[i] + (joints[PARENTS[i]] if i else 0.0)
    start = joints.copy()
    end = np.where((AXIS_CHILD >= 0)[:, None], joints[AXIS_CHILD], joints + tips[:, None] * axes)
    start[0], end[0] = joints[0] - tips[0] * axes[0], joints[0]  # pelvis hangs below its joint
    return joints, start, end


def _vertices(offsets, tips, radii, frames, layout, segments) -> np.ndarray:
    """All tube vertices, part by part: [start pole, R rings of S vertices, end pole].

    Returns (24 * (R*S + 2)) x 3. Linear in (offsets, tips, radii) for fixed frames.
    """
    t, sigma, f = layout  # R each
    d1, d2, axis = frames[:, 0], frames[:, 1], frames[:, 2]  # 24 x 3 each
    _, start, end = _tube_ends(offsets, tips, axis)
    r = (1 - t)[None, :, None] * radii[:, None, 0] + t[None, :, None] * radii[:, None, 1]  # 24xRx2
    cap = _CAP * r.mean(-1)  # 24 x R
    centres = (start[:, None] + t[None, :, None] * (end - start)[:, None]
               + (sigma * cap)[..., None] * axis[:, None])  # 24 x R x 3
    alpha = 2 * np.pi * np.arange(segments) / segments  # S
    across = (r[..., 0, None, None] * np.cos(alpha)[:, None] * d1[:, None, None]
              + r[..., 1, None, None] * np.sin(alpha)[:, None] * d2[:, None, None])  # 24xRxSx3
    rings = centres[:, :, None] + f[None, :, None, None] * across  # 24 x R x S x 3
    pole0 = start - _CAP * radii[:, 0].mean(-1, keepdims=True) * axis  # 24 x 3
    pole1 = end + _CAP * radii[:, 1].mean(-1, keepdims=True) * axis
    per_part = np.concatenate([pole0[:, None], rings.reshape(NUM_JOINTS, -1, 3), pole1[:, None]], 1)
    return per_part.reshape(-1, 3)


def _tube_faces(rings: int, segments: int) -> np.ndarray:
    """Closed tube triangles, outward for rings ordered along the axis: (2*S*R) x 3."""
    j = np.arange(segments)
    jn = (j + 1) % segments

    def idx(k, jj):
        return 1 + k * segments + jj

    k = np.arange(rings - 1)[:, None]
    a, b, c, d = idx(k, j), idx(k, jn), idx(k + 1, jn), idx(k + 1, j)  # x S each
    sides = np.concatenate([np.stack([a, b, c], -1), np.stack([a, c, d], -1)]).reshape(-1, 3)
    pole1 = 1 + rings * segments
    bottom = np.stack([np.zeros_like(j), idx(0, jn), idx(0, j)], -1)
    top = np.stack([idx(rings - 1, j), idx(rings - 1, jn), np.full_like(j, pole1)], -1)
    return np.concatenate([bottom, sides, top]).astype(np.int64)


def _smoothstep(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3 - 2 * x)


def procedural_body(
    seed: int = 0, segments: int = 16, body_rings: int = 8, cap_rings: int = 3
) -> BodyModel:
    """Build the procedural SMPL-layout body (deterministic: same arguments, same bytes).

    seed 0 is the mean body; any other seed bakes a random identity (betas ~ N(0, 0.5^2) in the
    body's own shape space) into the template. Defaults give 24 * (14*16 + 2) = 5424 vertices.
    """
    if segments < 3 or body_rings < 2 or cap_rings < 1:
        raise ValueError(
            f"procedural_body needs segments >= 3, body_rings >= 2, cap_rings >= 1; got "
            f"{segments}, {body_rings}, {cap_rings}"
        )
    layout = _ring_layout(body_rings, cap_rings)
    rings = len(layout[0])
    per_part = rings * segments + 2
    offsets, tips, radii = _rest_params()
    frames = cross_section_frames(bone_axes(_REST_JOINTS))  # 24 x 3 x 3
    v_rest = _vertices(offsets, tips, radii, frames, layout, segments)  # V x 3

    # 1. Shape components: exact differences, since vertices are linear in the parameters
    shapedirs = np.empty(v_rest.shape + (NUM_BETAS,))  # V x 3 x 10
    for k, (_, edit) in enumerate(SHAPE_COMPONENTS):
        params = {"offsets": offsets.copy(), "tips": tips.copy(), "radii": radii.copy()}
        for array, index, factor in edit:
            params[array][index] *= factor
        edited = _vertices(params["offsets"], params["tips"], params["radii"], frames, layout,
                           segments)
        shapedirs[..., k] = edited - v_rest

    # 2. Axial position of every ring (and pole) along its tube, in metres from the start
    joints, start, end = _tube_ends(offsets, tips, frames[:, 2])
    length = np.linalg.norm(end - start, axis=1)  # 24
    t, sigma, _ = layout
    r_mean = ((1 - t)[None] * radii[:, 0].mean(-1)[:, None]
              + t[None] * radii[:, 1].mean(-1)[:, None])  # 24 x R
    s_ring = t[None] * length[:, None] + sigma[None] * _CAP * r_mean  # 24 x R
    s_pole0 = -_CAP * radii[:, 0].mean(-1)
    s_pole1 = length + _CAP * radii[:, 1].mean(-1)
    s = np.concatenate([s_pole0[:, None], np.repeat(s_ring, segments, 1), s_pole1[:, None]], 1)

    # 3. Skinning: full weight on the part, blending smoothly into the parent near the part's
    #    joint and into the axis child near the child's joint (never above _BLEND_MAX each)
    n_verts = NUM_JOINTS * per_part
    weights = np.zeros((n_verts, NUM_JOINTS))
    posedirs = np.zeros((NUM_POSE_FEATURES, n_verts, 3))
    radial = v_rest.reshape(NUM_JOINTS, per_part, 3) - _axis_points(v_rest, start, frames, per_part)
    radial /= np.maximum(np.linalg.norm(radial, axis=-1, keepdims=True), 1e-9)
    for i in range(NUM_JOINTS):
        rows = slice(i * per_part, (i + 1) * per_part)
        s_joint = length[i] if i == 0 else 0.0
        child = AXIS_CHILD[i]
        s_child = (length[0] + np.linalg.norm(joints[3] - joints[0])) if i == 0 else length[i]
        blend = min(_BLEND, 0.4 * (s_child - s_joint))
        p = _BLEND_MAX * (1 - _smoothstep((s[i] - s_joint) / blend)) if i else 0 * s[i]
        q = _BLEND_MAX * _smoothstep((s[i] - s_child + blend) / blend) if child >= 0 else 0 * s[i]
        weights[rows, i] = 1 - p - q
        # 4. Pose correctives: a radial bulge around each joint, growing with the bend of that
        #    joint's own rotation: feature rows (R - I)_00, _11, _22 of joint k sum to
        #    2 cos(angle) - 2, so -_BULGE * that is an outward push of 2 * _BULGE * (1 - cos)
        for k, g in ((PARENTS[i], p), (child, q)):
            if k < 0 or not np.any(g):
                continue
            weights[rows, k] += g
            joint = i if k == PARENTS[i] else k  # the joint the blend zone sits on
            bulge = -_BULGE * (g / _BLEND_MAX)[:, None] * radial[i]  # per_part x 3
            for m in (0, 4, 8):
                posedirs[9 * (joint - 1) + m, rows] += bulge
    posedirs = posedirs.reshape(NUM_POSE_FEATURES, -1)

    # 5. Joint regressor: the mean of the ring that sits exactly on each joint
    j_regressor = np.zeros((NUM_JOINTS, n_verts))
    for i in range(NUM_JOINTS):
        ring = cap_rings + (body_rings - 1 if i == 0 else 0)
        first = i * per_part + 1 + ring * segments
        j_regressor[i, first:first + segments] = 1.0 / segments

    faces = _tube_faces(rings, segments)
    faces = (faces[None] + per_part * np.arange(NUM_JOINTS)[:, None, None]).reshape(-1, 3)
    v_template = v_rest
    if seed:
        betas = np.random.default_rng(seed).normal(0.0, 0.5, NUM_BETAS)
        v_template = v_rest + shapedirs @ betas
    return BodyModel(
        v_template=v_template, shapedirs=shapedirs, posedirs=posedirs, j_regressor=j_regressor,
        weights=weights, faces=faces, parents=PARENTS.copy(), name=f"procedural(seed={seed})",
    )


def _axis_points(verts, start, frames, per_part) -> np.ndarray:
    """Closest point on each part's axis for each of its vertices: 24 x per_part x 3."""
    verts = verts.reshape(NUM_JOINTS, per_part, 3)
    axis = frames[:, 2]  # 24 x 3
    h = np.einsum("pvc,pc->pv", verts - start[:, None], axis)  # 24 x per_part
    return start[:, None] + h[..., None] * axis[:, None]
