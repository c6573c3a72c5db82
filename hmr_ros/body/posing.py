"""Readable float64 NumPy linear blend skinning with ``smplx.lbs`` semantics.

The reference the CLI and the tests use to pose a body; the fast batched LBS (torch, C++, CUDA)
lives in ``hmr_ros.kernels``. Steps and names follow SMPL (Loper et al. 2015) and smplx.
"""

from __future__ import annotations

from typing import Tuple

import numpy as np

from .constants import NUM_BETAS, NUM_JOINTS
from .model import BodyModel

__all__ = ["pose_body", "axis_angle_to_matrix"]


def pose_body(
    model: BodyModel, betas: np.ndarray, rotmats: np.ndarray
) -> Tuple[np.ndarray, np.ndarray]:
    """Shape, pose-correct and skin the body.

    betas: B x 10; rotmats: B x 24 x 3 x 3 relative joint rotations (root = global orientation)
    returns vertices B x V x 3 and posed joints B x 24 x 3, float64
    """
    betas = np.asarray(betas, dtype=np.float64)
    rotmats = np.asarray(rotmats, dtype=np.float64)
    if betas.ndim != 2 or betas.shape[1] != NUM_BETAS:
        raise ValueError(f"betas must have shape (B, {NUM_BETAS}), got {betas.shape}")
    if rotmats.shape != (betas.shape[0], NUM_JOINTS, 3, 3):
        raise ValueError(
            f"rotmats must have shape ({betas.shape[0]}, {NUM_JOINTS}, 3, 3), got {rotmats.shape}"
        )
    batch = betas.shape[0]
    v_template = model.v_template.astype(np.float64)  # V x 3
    shapedirs = model.shapedirs.astype(np.float64)  # V x 3 x 10
    posedirs = model.posedirs.astype(np.float64)  # 207 x V*3
    parents = model.parents

    # 1. Add shape contribution
    v_shaped = v_template + np.einsum("bl,vcl->bvc", betas, shapedirs)  # B x V x 3
    # 2. Get the joints
    joints = np.einsum("jv,bvc->bjc", model.j_regressor.astype(np.float64), v_shaped)  # B x 24 x 3
    # 3. Add pose blend shapes
    pose_feature = (rotmats[:, 1:] - np.eye(3)).reshape(batch, -1)  # B x 207
    v_posed = v_shaped + (pose_feature @ posedirs).reshape(batch, -1, 3)  # B x V x 3
    # 4. Chain the rigid transforms down the kinematic tree
    rel_joints = joints.copy()
    rel_joints[:, 1:] -= joints[:, parents[1:]]  # B x 24 x 3
    local = np.zeros((batch, NUM_JOINTS, 4, 4))
    local[:, :, :3, :3] = rotmats
    local[:, :, :3, 3] = rel_joints
    local[:, :, 3, 3] = 1.0
    world = np.empty_like(local)  # B x 24 x 4 x 4
    world[:, 0] = local[:, 0]
    for i in range(1, NUM_JOINTS):
        world[:, i] = world[:, parents[i]] @ local[:, i]
    posed_joints = world[:, :, :3, 3].copy()  # B x 24 x 3
    # transforms relative to the rest pose: x -> R_world (x - J_rest) + J_posed
    rel = world.copy()
    rel[:, :, :3, 3] -= np.einsum("bjmn,bjn->bjm", world[:, :, :3, :3], joints)
    # 5. Do skinning
    blended = np.einsum("vj,bjmn->bvmn", model.weights.astype(np.float64), rel)  # B x V x 4 x 4
    vertices = np.einsum("bvmn,bvn->bvm", blended[..., :3, :3], v_posed) + blended[..., :3, 3]
    return vertices, posed_joints


def axis_angle_to_matrix(axis_angle: np.ndarray) -> np.ndarray:
    """Rodrigues' formula: ... x 3 axis-angle (direction = axis, norm = angle) -> ... x 3 x 3."""
    axis_angle = np.asarray(axis_angle, dtype=np.float64)
    angle = np.linalg.norm(axis_angle, axis=-1, keepdims=True)[..., None]  # ... x 1 x 1
    axis = axis_angle / np.maximum(angle[..., 0], 1e-12)
    x, y, z = axis[..., 0], axis[..., 1], axis[..., 2]
    zero = np.zeros_like(x)
    skew = np.stack([zero, -z, y, z, zero, -x, -y, x, zero], axis=-1).reshape(axis.shape + (3,))
    return np.eye(3) + np.sin(angle) * skew + (1 - np.cos(angle)) * skew @ skew
