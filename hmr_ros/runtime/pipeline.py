"""The per-frame pipeline shared by the node, the evaluation and the demos.

One frame in (RGB image, optional intrinsics, optional person boxes, header), a list of people
out (:class:`FrameResult`). People come from the boxes handed in (a ``detections`` topic), else
from the keypoint detector when the pipeline has one, else the whole frame is one person; with
a detector, each person also carries the keypoint model's 2D keypoints. Bad input never raises:
the frame is skipped with a logged reason carrying its stamp, and the pipeline serves the next
frame.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Optional, Sequence, Tuple

import numpy as np

from .boxes import Box, iou_matrix, select_boxes, whole_frame
from .camera import crop_to_full_translation, project, resolve_intrinsics
from .crop import crop_batch, square_geometry
from .results import FrameResult, Header, PersonResult
from .smoothing import PoseSmoother
from .tracking import Tracker

log = logging.getLogger("hmr_ros.runtime")

MAX_IMAGE_SIDE = 16384


@dataclass(frozen=True)
class PipelineParams:
    max_persons: int = 5
    score_threshold: float = 0.5
    min_box_size: float = 16.0  # pixels, after clipping to the image
    context: float = 1.2  # square crop side = context x the box's longer side
    mode: str = "ks_matched"  # merge mode (paper table 2)
    track: bool = True
    smooth: bool = False
    smooth_min_cutoff: float = 1.0
    smooth_beta: float = 0.05
    hypotheses_seed: int = 0  # fixed noise for the flow's hypotheses: stable output
    refine_iterations: int = 0  # > 0: fit each body to its detected keypoints (refine.py)
    refine_prior: float = 0.05  # how strongly refinement keeps the regressor's rotations
    #: merge modes computed beside ``mode`` from the same stage outputs (evaluation of paper
    #: table 2 in one run): each person's ``ablation[mode] = (vertices, joints)``, camera frame,
    #: the regressor's own merge before refinement and smoothing. Empty: none (the node).
    ablation_modes: Tuple[str, ...] = ()

    def __post_init__(self):
        if self.max_persons < 1:
            raise ValueError(f"max_persons must be >= 1, got {self.max_persons}")
        if not 0.0 <= self.score_threshold <= 1.0:
            raise ValueError(f"score_threshold must be in [0, 1], got {self.score_threshold}")
        if self.context < 1.0:
            raise ValueError(f"context must be >= 1.0, got {self.context}")
        from .merge import MODES

        unknown = [m for m in (self.mode, *self.ablation_modes) if m not in MODES]
        if unknown:
            raise ValueError(f"unknown merge mode(s) {unknown}: use {', '.join(MODES)}")


class FramePipeline:
    """Boxes -> crops -> regressor (stages + kernels) -> full-frame results, tracked."""

    def __init__(self, regressor, params: PipelineParams = PipelineParams(),
                 keypoint_detector=None):
        """``keypoint_detector``: a :class:`hmr_ros.detect.PoseKeypointDetector` (anything with
        ``detector(image) -> [person with .box, .score, .coco17]`` and
        ``detector.keypoints_for_boxes(image, boxes) -> [person or None per box]``)."""
        self.regressor = regressor
        self.keypoint_detector = keypoint_detector
        self.params = params
        prep = regressor.manifest.preprocessing
        self.crop_size = int(prep["crop_size"])
        self.mean, self.std = prep["mean"], prep["std"]
        self.tracker = Tracker() if params.track else None
        self.smoother = (PoseSmoother(params.smooth_min_cutoff, params.smooth_beta)
                         if params.smooth else None)
        self._z = regressor.default_z(params.max_persons, seed=params.hypotheses_seed)
        # One frame at a time through crops (device staging buffers), the regressor, the
        # tracker and the smoother: safe under a multi-threaded executor.
        self._lock = threading.Lock()

    def process(self, image: np.ndarray, K: Optional[np.ndarray] = None,
                boxes: Optional[Sequence[Box]] = None, header: Header = Header()) -> FrameResult:
        try:
            with self._lock:
                return self._process(image, K, boxes, header)
        except Exception as exc:  # a bad frame must not take the node down
            reason = f"{type(exc).__name__}: {exc}"
            log.warning("frame %s (%s) skipped: %s", header.stamp_ns, header.frame_id, reason)
            return FrameResult(header=header, skipped=reason)

    def _process(self, image, K, boxes, header) -> FrameResult:
        t0 = time.perf_counter()
        problem = check_image(image)
        if problem:
            log.warning("frame %s (%s) skipped: %s", header.stamp_ns, header.frame_id, problem)
            return FrameResult(header=header, skipped=problem)
        # views (e.g. bgr[..., ::-1], the usual BGR -> RGB step) are welcome: the crop kernel
        # reads C-contiguous memory, so such a frame is copied once here
        image = np.ascontiguousarray(image)
        height, width = image.shape[:2]
        intr = resolve_intrinsics(K, width, height)
        notes = []
        if K is not None and intr.assumed:
            notes.append("camera intrinsics unusable (non-finite, or focal length / principal "
                         "point out of range): "
                         "focal length assumed")
        timing = {}
        if getattr(self.regressor, "bottom_up", False):
            staged = self._bottom_up(image, intr, boxes, notes, timing)
        else:
            staged = self._top_down(image, intr, boxes, notes, timing, t0)
        if staged is None:  # nobody this frame: tracks age (and die) all the same
            if self.tracker is not None:
                self.tracker.update([])
                if self.smoother is not None:
                    self.smoother.forget(self.tracker.active_ids())
            timing["total"] = time.perf_counter() - t0
            return FrameResult(header=header, timing=timing, assumed_intrinsics=intr.assumed,
                               intrinsics=intr.matrix(), notes=tuple(notes))
        chosen, keypoints, out, transl, ablation = staged
        t1 = time.perf_counter()
        rel, betas = out["rel_rotmats"], out["betas"]
        vertices, joints = out["vertices"], out["joints"]
        if self.params.refine_iterations > 0 and any(k is not None for k in keypoints):
            t_ref = time.perf_counter()
            rel, transl, changed = _refine_people(self.regressor, self.params, rel, betas,
                                                  transl, keypoints, intr.matrix())
            if changed:
                vertices, joints = self.regressor.lbs(np.ascontiguousarray(betas, np.float32),
                                                      np.ascontiguousarray(rel, np.float32))
            timing["refine"] = time.perf_counter() - t_ref
        ids = self.tracker.update(chosen) if self.tracker else [-1] * len(chosen)
        if self.smoother is not None:
            rel, transl = rel.copy(), transl.copy()
            t_sec = header.stamp_ns * 1e-9
            for i, tid in enumerate(ids):
                if tid >= 0:
                    rel[i], transl[i] = self.smoother(tid, rel[i], transl[i], t_sec)
            vertices, joints = self.regressor.lbs(np.ascontiguousarray(betas, np.float32),
                                                  np.ascontiguousarray(rel, np.float32))
            # in step with the tracker: a track missed for a few frames keeps its filter
            self.smoother.forget(self.tracker.active_ids() if self.tracker else
                                 [t for t in ids if t >= 0])
        persons = []
        for i, box in enumerate(chosen):
            v = vertices[i] + transl[i]
            j = joints[i] + transl[i]
            scores = out.get("match_scores")
            persons.append(PersonResult(
                track_id=int(ids[i]), bbox=box.as_array(), score=box.score,
                rel_rotmats=rel[i], betas=betas[i], transl=transl[i], vertices=v, joints=j,
                keypoints2d=project(j, intr), visibility=out["omega"][i],
                hypothesis=int(out["best"][i]),
                match_scores=None if scores is None else scores[i],
                detected_keypoints=keypoints[i],
                ablation=None if ablation is None else
                {m: (v[i] + transl[i], j[i] + transl[i]) for m, (v, j) in ablation.items()}))
        timing["postprocess"] = time.perf_counter() - t1
        timing["total"] = time.perf_counter() - t0
        return FrameResult(header=header, persons=tuple(persons), timing=timing,
                           assumed_intrinsics=intr.assumed, intrinsics=intr.matrix(),
                           notes=tuple(notes))

    def _top_down(self, image, intr, boxes, notes, timing, t0):
        """People from the boxes (given, detected, or the whole frame), each cropped and
        regressed: (chosen boxes, keypoints, regressor output, translations, ablation), or None
        when nobody is left."""
        height, width = image.shape[:2]
        found = None
        if boxes is None and self.keypoint_detector is not None:
            found = self.keypoint_detector(image)
            boxes = [Box(*(float(v) for v in q.box), score=float(q.score)) for q in found]
        elif boxes is None:
            boxes = [whole_frame(width, height)]
        chosen = select_boxes(list(boxes), width, height, self.params.score_threshold,
                              self.params.min_box_size, self.params.max_persons, notes)
        if self.keypoint_detector is not None:
            if found is None:  # boxes from a topic: keypoints for exactly those, in order
                per_box = (self.keypoint_detector.keypoints_for_boxes(
                    image, [b.as_array() for b in chosen]) if chosen else [])
                keypoints = [None if q is None else np.asarray(q.coco17, np.float32)
                             for q in per_box]
            else:
                keypoints = _match_keypoints(chosen, found)
            timing["detector"] = time.perf_counter() - t0
        else:
            keypoints = [None] * len(chosen)
        t_crop = time.perf_counter()
        if not chosen:
            return None
        geoms = [square_geometry(b, self.crop_size, self.params.context) for b in chosen]
        crops = crop_batch(image, geoms, self.mean, self.std,
                           getattr(self.regressor, "placement", None))
        timing["preprocess"] = time.perf_counter() - t_crop
        kwargs = {}
        if getattr(self.regressor, "takes_keypoints", False):
            kwargs["keypoints"] = crop_keypoints(keypoints, geoms)
        if getattr(self.regressor, "takes_context", False):  # OCHMR: everyone's body centres
            kwargs["context"] = person_context(chosen, geoms, self.regressor.context)
        out = self.regressor(crops, self._z[: len(chosen)], mode=self.params.mode, **kwargs)
        timing.update(out.get("timing", {}))
        centers = np.array([[g.cx, g.cy] for g in geoms])
        sizes = np.array([g.size for g in geoms])
        transl = crop_to_full_translation(out["cam"], centers, sizes, intr)
        return chosen, keypoints, out, transl, self._ablation(out, transl, timing)

    def _bottom_up(self, image, intr, boxes, notes, timing):
        """People from a bottom-up model's own centres (the whole frame in one pass), each with
        the box of its projected mesh: as `_top_down`. Boxes handed in are not needed."""
        if boxes is not None:
            notes.append("person boxes ignored: the bottom-up model finds people itself")
        found = self.regressor.find_people(image, self.params.max_persons)
        timing.update(found["timing"])
        t = time.perf_counter()
        geom, n = found["geometry"], len(found["scores"])
        if not n:
            return None
        transl = crop_to_full_translation(found["cam"], np.tile([[geom.cx, geom.cy]], (n, 1)),
                                          np.full(n, geom.size), intr)
        height, width = image.shape[:2]
        pixels = project(found["vertices"] + transl[:, None, :].astype(np.float32), intr)
        candidates = [Box(*(float(v) for v in (p[:, 0].min(), p[:, 1].min(), p[:, 0].max(),
                                                p[:, 1].max())), score=float(score))
                      if np.isfinite(p).all() else Box(np.nan, np.nan, np.nan, np.nan, 0.0)
                      for p, score in zip(pixels, found["scores"])]
        chosen, keep = [], []
        for i, box in enumerate(candidates):  # each body's own box, checked like given ones
            kept = select_boxes([box], width, height, 0.0, self.params.min_box_size, 1, notes)
            if kept:
                chosen.append(kept[0])
                keep.append(i)
        if not chosen:
            return None
        keep = np.asarray(keep)
        out = {k: found[k][keep] for k in ("rel_rotmats", "betas", "cam", "vertices", "joints",
                                           "omega", "best")}
        out["match_scores"] = None
        if self.keypoint_detector is not None:  # keypoints for refinement, for these bodies
            per_box = self.keypoint_detector.keypoints_for_boxes(
                image, [b.as_array() for b in chosen])
            keypoints = [None if q is None else np.asarray(q.coco17, np.float32)
                         for q in per_box]
        else:
            keypoints = [None] * len(chosen)
        timing["boxes"] = time.perf_counter() - t
        return chosen, keypoints, out, transl[keep], None

    def _ablation(self, out: dict, transl: np.ndarray, timing: dict):
        """{mode: (vertices, joints)} for ``params.ablation_modes`` (model frame), or None."""
        modes = self.params.ablation_modes
        if not modes or not hasattr(self.regressor, "remerge"):
            return None
        t = time.perf_counter()
        result = {}
        for m in modes:
            if m == self.params.mode:
                result[m] = (out["vertices"], out["joints"])
            else:
                merged = self.regressor.remerge(out, m)
                result[m] = (merged["vertices"], merged["joints"])
        timing["ablation"] = time.perf_counter() - t
        return result


def _refine_people(regressor, params: PipelineParams, rel, betas, transl, keypoints, K):
    """Each person with keypoints fitted to them (refine.py); returns (rel, transl, changed)."""
    from .refine import RefineParams, refine_person

    rp = RefineParams(iterations=params.refine_iterations, prior_weight=params.refine_prior)
    n = len(rel)
    eye = np.broadcast_to(np.eye(3, dtype=np.float32), (n, 24, 3, 3))
    _, rest = regressor.lbs(np.ascontiguousarray(betas, np.float32), np.ascontiguousarray(eye))
    rel, transl = np.array(rel, np.float32), np.array(transl, np.float32)
    changed = False
    for i in range(n):
        if keypoints[i] is None:
            continue
        fitted = refine_person(rel[i], rest[i], transl[i], keypoints[i], K, rp)
        if fitted is not None:
            rel[i], transl[i] = fitted
            changed = True
    return rel, transl, changed


def person_context(chosen: Sequence[Box], geoms, spec) -> np.ndarray:
    """OCHMR's input beside the crops: each chosen person's local centre map and the global map
    of all chosen people, in that person's crop (``spec``: the manifest's channels, size, sigma).
    Centres are box centres, as in training (`hmr_ros.train.param_regressor.context_maps`)."""
    from .context import centre_maps, crop_box

    _, size, sigma = spec
    return centre_maps([b.as_array() for b in chosen], [crop_box(g) for g in geoms], size,
                       sigma=sigma)


def crop_keypoints(keypoints: Sequence[Optional[np.ndarray]], geoms) -> np.ndarray:
    """Image-pixel COCO-17 keypoints per person (None = none detected) -> the keypoint-
    conditioned regressor's input: (N, 17, 3) crop-normalised, confidence 0 where absent."""
    out = np.zeros((len(geoms), 17, 3), np.float32)
    for i, (kp, g) in enumerate(zip(keypoints, geoms)):
        if kp is None:
            continue
        kp = np.asarray(kp, np.float32)
        # -1 and +1 are the crop's outer pixel edges (pixel centres at integers, as
        # CropGeometry.crop_to_image)
        half = 0.5 * g.size
        out[i, :, 0] = (kp[:, 0] + 0.5 - g.cx) / half
        out[i, :, 1] = (kp[:, 1] + 0.5 - g.cy) / half
        out[i, :, 2] = np.clip(kp[:, 2], 0.0, 1.0)
    # inside the crop, as in training (the renders are the crops, and the detector's points
    # are clipped to them): a point the detector extrapolated beyond the frame sits on the edge
    np.clip(out[..., :2], -1.0, 1.0, out=out[..., :2])
    bad = ~np.isfinite(out).all(axis=-1)
    out[bad] = 0.0
    return out


def _match_keypoints(chosen: Sequence[Box], people) -> list:
    """Each chosen box's keypoints: the detected person whose box overlaps it most (IoU >= 0.3),
    each person used once; None where nobody matches."""
    if not people:
        return [None] * len(chosen)
    iou = iou_matrix(list(chosen), [Box(*(float(v) for v in q.box)) for q in people])
    out = [None] * len(chosen)
    for _ in range(min(len(chosen), len(people))):
        i, j = np.unravel_index(np.argmax(iou), iou.shape)
        if iou[i, j] < 0.3:
            break
        out[i] = np.asarray(people[j].coco17, np.float32)
        iou[i, :] = -1.0
        iou[:, j] = -1.0
    return out


def check_image(image) -> Optional[str]:
    """Why ``image`` cannot be processed, or None. Expects H x W x 3 uint8 RGB."""
    if not isinstance(image, np.ndarray):
        return f"image must be a NumPy array, got {type(image).__name__}"
    if image.dtype != np.uint8:
        return f"image must be uint8 RGB, got dtype {image.dtype}"
    if image.ndim != 3 or image.shape[2] != 3:
        return f"image must be H x W x 3 (RGB), got shape {image.shape}"
    h, w = image.shape[:2]
    if h < 2 or w < 2:
        return f"image is too small ({w}x{h})"
    if max(h, w) > MAX_IMAGE_SIDE:
        return f"image is too large ({w}x{h}); the limit is {MAX_IMAGE_SIDE} px a side"
    return None
