"""People and their 2D keypoints in a camera frame: BlazePose, multi-person, with tracking.

Per frame:

1. **Regions.** People found last frame are looked at again where their auxiliary landmarks
   say they went (MediaPipe's tracking); the detector runs when nobody is tracked and every
   ``detect_every`` frames to find newcomers. A detection whose hip centre lies within a
   quarter region of a tracked one is the same person and is dropped. Boxes handed in (a
   ``detections`` topic, :meth:`PoseKeypointDetector.keypoints_for_boxes`) replace both.
2. **Landmarks.** One batched run of the landmark model over every region (in chunks of the
   backend's batch limit).
3. **Keep.** A region whose pose score falls below ``min_pose_score`` is dropped (the person
   left); overlapping survivors are merged (two tracks that converged on one person).

Runs on any backend of :mod:`hmr_ros.runtime.backends` (ONNX Runtime on CPUs, TensorRT on
GPUs), from a model directory written by :func:`hmr_ros.detect.convert.convert`.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Union

import numpy as np

from hmr_ros.body.keypoints import coco17_from_blazepose33

from .convert import default_model_dir
from .decode import (NUM_POSE_LANDMARKS, Candidates, Detection, Landmarks, Roi, box_iou,
                     decode_candidates, decode_landmarks, detector_views, person_box,
                     roi_from_box, roi_from_detection, roi_input, view_input, weighted_nms)

log = logging.getLogger("hmr_ros.detect")

MISSING_MODEL_HINT = ("the person detector is not installed: run `hmr-ros detector fetch` "
                      "(downloads MediaPipe 0.10.14's BlazePose and converts it to ONNX; `make "
                      "install` does this)")


@dataclass(frozen=True)
class DetectorParams:
    min_detection_score: float = 0.5  # detector score to start looking at a person
    min_pose_score: float = 0.5  # landmark model's person probability to keep one
    nms_iou: float = 0.3
    max_persons: int = 5
    detect_every: int = 3  # frames between detector runs while people are tracked (1: always)
    track: bool = True  # reuse last frame's landmark regions
    same_person_iou: float = 0.4  # box overlap above which two regions are one person
    detector_tile: int = 0  # > 0: also run the detector on tiles of this many pixels (far people)

    def __post_init__(self):
        if self.detect_every < 1:
            raise ValueError(f"detect_every must be >= 1, got {self.detect_every}")
        if self.max_persons < 1:
            raise ValueError(f"max_persons must be >= 1, got {self.max_persons}")


@dataclass(frozen=True)
class PersonKeypoints:
    """One person's BlazePose landmarks, in image pixels."""

    box: np.ndarray  # (4,) x0, y0, x1, y1 around the landmarks (head top included)
    score: float  # the landmark model's probability that a person is there
    landmarks: np.ndarray  # (33, 4): x, y pixels, visibility, presence
    world: np.ndarray  # (33, 3) metres, hip-centred, image axes (x right, y down)
    roi: Roi

    @property
    def coco17(self) -> np.ndarray:
        """(17, 3): x, y pixels and a confidence (visibility x presence)."""
        c = coco17_from_blazepose33(self.landmarks)
        return np.concatenate([c[:, :2], (c[:, 2] * c[:, 3])[:, None]], axis=1).astype(np.float32)

    def facing_camera(self, threshold: float = 0.5) -> Optional[bool]:
        """Whether the person faces the camera, from the order of the shoulders: facing the
        camera, the left shoulder is on the image's right of the torso's up direction (hips to
        shoulders; the hips may be estimated outside the image). None when the shoulders are
        not confidently seen, or the person is in profile (shoulder span under 0.3 torso
        lengths).

        The face landmarks' visibility would be the obvious judge, but BlazePose keeps them
        visible on people seen from behind (measured on vtest.avi: "face visible" for 605 of
        606 detected people, about half of whom walk away from the camera)."""
        c = self.coco17
        ls, rs, lh, rh = c[5], c[6], c[11], c[12]
        if min(ls[2], rs[2]) < threshold or not np.isfinite(c[[5, 6, 11, 12], :2]).all():
            return None
        up = (ls[:2] + rs[:2]) / 2 - (lh[:2] + rh[:2]) / 2
        across = ls[:2] - rs[:2]
        torso = float(np.linalg.norm(up))
        if torso < 1e-6 or np.linalg.norm(across) < 0.3 * torso:
            return None
        # image axes x right, y down: facing the camera, left shoulder lies to the image
        # right, i.e. the cross product up x across is positive
        return bool(up[0] * across[1] - up[1] * across[0] > 0)


@dataclass
class DetectorStats:
    frames: int = 0
    detector_runs: int = 0
    timing: Dict[str, float] = field(default_factory=dict)  # last frame, seconds


class PoseKeypointDetector:
    """BlazePose (detector + full landmark model) for many people; see the module docs."""

    def __init__(self, model_dir: Union[str, Path, None] = None, backend: str = "auto",
                 params: DetectorParams = DetectorParams(), threads: Optional[int] = None,
                 **backend_options):
        """``backend_options`` go to the backend (e.g. TensorRT's ``precision``,
        ``cache_dir``; see ``hmr_ros.runtime.backends.select_backend``)."""
        from hmr_ros.runtime.backends import select_backend
        from hmr_ros.runtime.errors import EngineError

        model_dir = Path(model_dir) if model_dir else default_model_dir()
        if not (model_dir / "manifest.json").is_file():
            raise EngineError(f"{model_dir}: {MISSING_MODEL_HINT}")
        self.model_dir = model_dir
        self.params = params
        self.backend = select_backend(backend, model_dir, threads=threads, **backend_options)
        if not {"detector", "landmarks"} <= set(self.backend.stages):
            raise EngineError(f"{model_dir} is not a person detector (stages "
                              f"{list(self.backend.stages)}, expected detector and landmarks)")
        self._tracked: List[Roi] = []
        self._since_detect = 0
        self._lock = threading.Lock()
        self.stats = DetectorStats()

    # --- public ------------------------------------------------------------------------------

    def __call__(self, image: np.ndarray) -> List[PersonKeypoints]:
        """People in ``image`` (H x W x 3 uint8 RGB), best first (boxes from elsewhere:
        :meth:`keypoints_for_boxes`)."""
        with self._lock:
            return self._run(np.ascontiguousarray(image))

    def reset(self) -> None:
        """Forget tracked people (a new video, a camera jump)."""
        with self._lock:
            self._tracked = []
            self._since_detect = 0

    def keypoints_for_boxes(self, image: np.ndarray, boxes: Sequence[np.ndarray]
                            ) -> List[Optional[PersonKeypoints]]:
        """One entry per box, in order (boxes from a ``detections`` topic): the person's
        keypoints, or None where the landmark model sees nobody in that box. Tracking is
        reset: the next frame without boxes starts from the detector."""
        with self._lock:
            self._tracked, self._since_detect = [], 0
            image = np.ascontiguousarray(image)
            h, w = image.shape[:2]
            rois = [roi_from_box(np.asarray(b, np.float32)) for b in boxes]
            return [self._person(lm, w, h) for lm in self.landmarks(image, rois)]

    def detect(self, image: np.ndarray) -> List[Detection]:
        """Detector only, over the whole frame and its tiles in one batch: detections (score,
        box, 4 keypoints) in image pixels, best first."""
        h, w = image.shape[:2]
        inputs = [view_input(image, v) for v in detector_views(w, h, self.params.detector_tile)]
        out = self._run_batched("detector", np.stack([x for x, _ in inputs]))
        found = Candidates.concatenate([
            decode_candidates(out["boxes"][i], out["scores"][i], lb,
                              self.params.min_detection_score)
            for i, (_, lb) in enumerate(inputs)])
        return weighted_nms(found, self.params.nms_iou, 2 * self.params.max_persons)

    def landmarks(self, image: np.ndarray, rois: Sequence[Roi]) -> List[Landmarks]:
        """Landmark model over ``rois`` in one batch."""
        if not rois:
            return []
        out = self._run_batched("landmarks", np.stack([roi_input(image, r) for r in rois]))
        return [decode_landmarks(out["landmarks"][i], float(out["pose_flag"][i, 0]),
                                 out["heatmap"][i], out["world"][i], roi)
                for i, roi in enumerate(rois)]

    def _run_batched(self, stage: str, batch: np.ndarray) -> Dict[str, np.ndarray]:
        """One stage over a batch, in chunks of the backend's batch limit (TensorRT engines
        have one: 8 by default; tiles and crowds exceed it)."""
        limit = getattr(self.backend, "max_batch", None) or len(batch)
        parts = [self.backend.run(stage, {"image": batch[i:i + limit]})
                 for i in range(0, len(batch), limit)]
        return {k: np.concatenate([np.asarray(p[k]) for p in parts]) for k in parts[0]}

    def _person(self, lm: Landmarks, width: int, height: int) -> Optional[PersonKeypoints]:
        """A landmark result as a person, or None (no person there, or degenerate)."""
        if lm.pose_score < self.params.min_pose_score or not np.isfinite(lm.points).all():
            return None
        box = person_box(lm.points, width, height)
        if box[2] - box[0] < 2 or box[3] - box[1] < 2:
            return None
        return PersonKeypoints(
            box=box, score=lm.pose_score,
            landmarks=np.concatenate([lm.points[:NUM_POSE_LANDMARKS, :2],
                                      lm.visibility[:NUM_POSE_LANDMARKS, None],
                                      lm.presence[:NUM_POSE_LANDMARKS, None]], axis=1),
            world=lm.world[:NUM_POSE_LANDMARKS], roi=lm.next_roi())

    # --- one frame ---------------------------------------------------------------------------

    def _run(self, image) -> List[PersonKeypoints]:
        p = self.params
        h, w = image.shape[:2]
        t0 = time.perf_counter()
        timing = {}
        self.stats.frames += 1
        rois = list(self._tracked) if p.track else []
        if not rois or self._since_detect + 1 >= p.detect_every or not p.track:
            found = self.detect(image)
            self.stats.detector_runs += 1
            self._since_detect = 0
            for det in found:
                roi = roi_from_detection(det)
                if not any(_same_region(roi, r) for r in rois):
                    rois.append(roi)
        else:
            self._since_detect += 1
        rois = rois[: 2 * p.max_persons]
        t1 = time.perf_counter()
        timing["detector"] = t1 - t0
        people = [q for q in (self._person(lm, w, h) for lm in self.landmarks(image, rois))
                  if q is not None]
        timing["landmarks"] = time.perf_counter() - t1
        people = _drop_duplicates(people, p.same_person_iou)[: p.max_persons]
        if p.track:
            self._tracked = [q.roi for q in people]
        timing["total"] = time.perf_counter() - t0
        self.stats.timing = timing
        return people


def _same_region(a: Roi, b: Roi) -> bool:
    """Two regions look at the same person when their centres (the hips) are closer than a
    quarter of the smaller region: different people's hips are at least a body width apart.
    (Overlap would not do: a region spans the whole body and neighbours' regions overlap.)"""
    return math.hypot(a.cx - b.cx, a.cy - b.cy) < 0.25 * min(a.side, b.side)


def _drop_duplicates(people: List[PersonKeypoints], iou: float) -> List[PersonKeypoints]:
    """Best first; a person whose box overlaps a better one's by more than ``iou`` is the same
    person seen twice (two regions converged) and is dropped."""
    kept: List[PersonKeypoints] = []
    for person in sorted(people, key=lambda q: -q.score):
        if all(box_iou(person.box, k.box) < iou for k in kept):
            kept.append(person)
    return kept
