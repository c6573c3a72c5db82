"""SMPL joint layout, pinned once (DESIGN.md §4).

Every body model in the package -- the user's SMPL files and the procedural body -- uses this
layout, so kernels, regressors and messages can index joints by the same numbers.
"""

from __future__ import annotations

import numpy as np

NUM_JOINTS = 24
NUM_BETAS = 10
NUM_POSE_FEATURES = (NUM_JOINTS - 1) * 9  # 207: rows of posedirs

JOINT_NAMES = (
    "pelvis", "left_hip", "right_hip", "spine1", "left_knee", "right_knee", "spine2",
    "left_ankle", "right_ankle", "spine3", "left_foot", "right_foot", "neck",
    "left_collar", "right_collar", "head", "left_shoulder", "right_shoulder",
    "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hand", "right_hand",
)

#: parent of each joint; the root has -1. Topologically ordered (parent index < child index).
PARENTS = np.array(
    [-1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 12, 13, 14, 16, 17, 18, 19, 20, 21],
    dtype=np.int64,
)

#: index of each joint's left/right mirror (itself on the midline); used for flip augmentation.
FLIP_PERMUTATION = np.array(
    [0, 2, 1, 3, 5, 4, 6, 8, 7, 9, 11, 10, 12, 14, 13, 15, 17, 16, 19, 18, 21, 20, 23, 22],
    dtype=np.int64,
)
