"""Bone axes and cross-section frames of the SMPL skeleton in its rest pose.

The procedural body builds each part as a tube around its bone axis, and the UV atlas projects
every part cylindrically around the same axis. Both take the axis from here, so on the procedural
body the chart seams and poles fall exactly where the tube's own seams and poles are.
"""

from __future__ import annotations

import numpy as np

from .constants import NUM_JOINTS, PARENTS

__all__ = ["AXIS_CHILD", "bone_axes", "cross_section_frames"]

#: joint whose position ends each part's axis; -1 for leaves. Joints with several children
#: follow the spine (pelvis -> spine1, spine3 -> neck): the hips and collars branch sideways.
AXIS_CHILD = np.full(NUM_JOINTS, -1, dtype=np.int64)
for _child in range(1, NUM_JOINTS):
    if AXIS_CHILD[PARENTS[_child]] < 0:
        AXIS_CHILD[PARENTS[_child]] = _child
AXIS_CHILD[0], AXIS_CHILD[9] = 3, 12

#: leaf axes in SMPL's rest frame (y up, facing +z): toes point forward, the head up. The
#: parent->joint direction would tilt them (the neck->head bone leans forward ~45 deg in SMPL).
#: Hands (22, 23) keep the wrist->hand direction.
_LEAF_AXES = {10: (0.0, 0.0, 1.0), 11: (0.0, 0.0, 1.0), 15: (0.0, 1.0, 0.0)}


def bone_axes(joints: np.ndarray) -> np.ndarray:
    """Unit axis of each part, from its joint towards the part's far end.

    joints: 24 x 3 rest joint positions  ->  24 x 3 unit vectors
    """
    joints = np.asarray(joints, dtype=np.float64)
    axes = np.empty((NUM_JOINTS, 3))
    for i in range(NUM_JOINTS):
        if AXIS_CHILD[i] >= 0:
            axes[i] = joints[AXIS_CHILD[i]] - joints[i]
        elif i in _LEAF_AXES:
            axes[i] = _LEAF_AXES[i]
        else:
            axes[i] = joints[i] - joints[PARENTS[i]]
    norm = np.linalg.norm(axes, axis=1, keepdims=True)
    # a degenerate bone (joint on top of its child) falls back to "up" rather than NaN
    return np.where(norm > 1e-9, axes / np.maximum(norm, 1e-12), np.array([0.0, 1.0, 0.0]))


def cross_section_frames(axes: np.ndarray) -> np.ndarray:
    """Right-handed frame (d1, d2, n) per axis n, with d1 x d2 = n.

    d1 is the body's left-right direction (x) projected off the axis, or its front-back
    direction (z) for bones that run left-right (arms, collars). So for the torso and legs the
    first cross-section radius is the width and the second the depth; for arms it is depth, then
    thickness.

    axes: N x 3 unit vectors  ->  N x 3 x 3, rows d1, d2, n
    """
    axes = np.asarray(axes, dtype=np.float64)
    ref = np.where(np.abs(axes[:, :1]) > 0.7, [[0.0, 0.0, 1.0]], [[1.0, 0.0, 0.0]])  # N x 3
    d1 = ref - np.sum(ref * axes, axis=1, keepdims=True) * axes
    d1 /= np.linalg.norm(d1, axis=1, keepdims=True)
    d2 = np.cross(axes, d1)
    return np.stack([d1, d2, axes], axis=1)
