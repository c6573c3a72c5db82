"""What one frame yields: typed, immutable results that carry the source image's header.

Units in the contract: metres in the camera frame (OpenCV axes: x right, y down, z forward),
pixels for boxes and 2D keypoints, seconds for timings, integer nanoseconds for stamps.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, Optional, Tuple

import numpy as np


@dataclass(frozen=True)
class Header:
    """The source image's header, passed through untouched (never re-stamped)."""

    stamp_ns: int = 0
    frame_id: str = ""


@dataclass(frozen=True)
class PersonResult:
    track_id: int  # -1 while a track is tentative (or tracking is off)
    bbox: np.ndarray  # (4,) x0, y0, x1, y1 pixels
    score: float
    rel_rotmats: np.ndarray  # (24, 3, 3) parent-relative; [0] = global orientation
    betas: np.ndarray  # (10,)
    transl: np.ndarray  # (3,) metres: added to the model's vertices/joints
    vertices: np.ndarray  # (V, 3) camera frame
    joints: np.ndarray  # (24, 3) camera frame
    keypoints2d: np.ndarray  # (24, 2) pixels
    visibility: np.ndarray  # (24,) ω in [0, 1]
    hypothesis: int  # chosen global-branch hypothesis (-1: visible-only mode)
    match_scores: Optional[np.ndarray] = None  # (K,) eq. 4 scores when matching ran
    #: the keypoint model's COCO-17 points (x, y pixels, confidence), when a detector ran
    detected_keypoints: Optional[np.ndarray] = None
    #: other merge modes of the same stage outputs, {mode: (vertices, joints)} camera frame,
    #: when `PipelineParams.ablation_modes` asks for them (evaluation only)
    ablation: Optional[Dict[str, Tuple[np.ndarray, np.ndarray]]] = None

    @property
    def global_orient(self) -> np.ndarray:
        return self.rel_rotmats[0]


@dataclass(frozen=True)
class FrameResult:
    header: Header
    persons: Tuple[PersonResult, ...] = ()
    timing: Dict[str, float] = field(default_factory=dict)  # seconds per stage
    assumed_intrinsics: bool = False  # no usable camera_info: focal length assumed
    intrinsics: Optional[np.ndarray] = None  # (3, 3) K the frame was processed with
    skipped: Optional[str] = None  # why the frame produced nothing, when it did not run
    notes: Tuple[str, ...] = ()  # dropped boxes and other non-fatal remarks
