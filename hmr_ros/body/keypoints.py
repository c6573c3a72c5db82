"""2D keypoint layouts shared by the detector, the synthetic data and the messages.

Three layouts meet in this package:

- **BlazePose-33**: what the bundled keypoint model (MediaPipe BlazePose) outputs.
- **COCO-17**: the keypoints the keypoint-conditioned regressor takes as input. Every layout
  here can fill it: BlazePose by index, the body model from joints plus head points.
- **COCO-18** (COCO-17 plus a neck) in the order of REP-155's ``hri_msgs/Skeleton2D`` (like
  OpenPose's COCO-18, but left before right for the eyes and ears).

"Left" is always the person's left.
"""

from __future__ import annotations

import numpy as np

BLAZEPOSE33_NAMES = (
    "nose", "left_eye_inner", "left_eye", "left_eye_outer", "right_eye_inner", "right_eye",
    "right_eye_outer", "left_ear", "right_ear", "mouth_left", "mouth_right", "left_shoulder",
    "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_pinky",
    "right_pinky", "left_index", "right_index", "left_thumb", "right_thumb", "left_hip",
    "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle", "left_heel",
    "right_heel", "left_foot_index", "right_foot_index",
)

COCO17_NAMES = (
    "nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder", "right_shoulder",
    "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hip", "right_hip",
    "left_knee", "right_knee", "left_ankle", "right_ankle",
)
NUM_COCO17 = len(COCO17_NAMES)

#: index of each COCO-17 point's left/right mirror, for flip augmentation
COCO17_FLIP = np.array([0, 2, 1, 4, 3, 6, 5, 8, 7, 10, 9, 12, 11, 14, 13, 16, 15], np.int64)

#: BlazePose-33 index of each COCO-17 point
COCO17_FROM_BLAZEPOSE33 = np.array(
    [BLAZEPOSE33_NAMES.index(n) for n in COCO17_NAMES], np.int64)

#: the face points: seen from behind they are hidden, which tells front from back
COCO17_FACE = np.array([0, 1, 2], np.int64)  # nose and eyes (ears show in profile too)

#: limbs of COCO-17 for drawing (pairs of indices)
COCO17_EDGES = (
    (0, 1), (0, 2), (1, 3), (2, 4), (5, 6), (5, 7), (7, 9), (6, 8), (8, 10), (5, 11), (6, 12),
    (11, 12), (11, 13), (13, 15), (12, 14), (14, 16),
)

#: REP-155 Skeleton2D order (hri_msgs): COCO-18 with a neck, left eye/ear before right
COCO18_NAMES = (
    "nose", "neck", "right_shoulder", "right_elbow", "right_wrist", "left_shoulder",
    "left_elbow", "left_wrist", "right_hip", "right_knee", "right_ankle", "left_hip",
    "left_knee", "left_ankle", "left_eye", "right_eye", "left_ear", "right_ear",
)

#: COCO-17 index of each COCO-18 point; the neck (-1) is the shoulders' midpoint
COCO18_FROM_COCO17 = np.array(
    [-1 if n == "neck" else COCO17_NAMES.index(n) for n in COCO18_NAMES], np.int64)


def coco18_from_coco17(points: np.ndarray) -> np.ndarray:
    """(..., 17, C) -> (..., 18, C), C >= 2; the neck is the mean of the shoulders and, when a
    third column holds confidences, takes the lower of their two."""
    points = np.asarray(points)
    idx = np.where(COCO18_FROM_COCO17 < 0, 0, COCO18_FROM_COCO17)
    out = points[..., idx, :].copy()
    neck = COCO18_NAMES.index("neck")
    shoulders = points[..., [5, 6], :]
    out[..., neck, :2] = shoulders[..., :2].mean(axis=-2)
    if points.shape[-1] > 2:
        out[..., neck, 2:] = shoulders[..., 2:].min(axis=-2)
    return out


def coco17_from_blazepose33(points: np.ndarray) -> np.ndarray:
    """(..., 33, C) -> (..., 17, C)."""
    return np.asarray(points)[..., COCO17_FROM_BLAZEPOSE33, :]
