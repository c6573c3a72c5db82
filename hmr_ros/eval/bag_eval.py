"""``hmr-ros eval BAG [BAG...] --report DIR``: replay recorded bags through the node's pipeline
and score it against the bags' ground truth.

Bags are read with the bag layer (`hmr_ros.bag.BagReader`: rosbag2 sqlite3 / MCAP, ROS 1).
Per bag, images (``sensor_msgs/Image`` or ``CompressedImage``), ``camera_info``, optional person
detections (``vision_msgs/Detection2DArray``) and ground truth (``hmr_ros/HumanMeshArray``) are
joined by header stamp; every image runs, as fast as possible, through the same
`FramePipeline` + `VisHMRRunner` the node builds (`hmr_ros.node.node.load_pipeline`, from the
node's own parameters: ``-p name:=value`` as for ``hmr-ros node``). Predictions are matched to
ground-truth persons per frame by the Hungarian algorithm on box IoU (joint distance breaks
ties); pairs under ``--min-iou`` are no match. A ground-truth person without a match is a
*miss*, a prediction without one a *false positive*. A bag that cannot be opened is reported
(``bags[].status == "skipped"`` with its ``reason``) and left out of the metrics; a bag that breaks
part-way keeps the frames read before the failure (``status == "partial"`` with the ``reason``);
the other bags' results are kept. Ctrl-C (SIGINT) stops the replay but still writes what was
computed: the report gets ``"interrupted": true``, the bag being read is ``"partial"`` (reason
``"interrupted"``) and bags not started are ``"skipped"`` (reason ``"not run: interrupted"``).

``--realtime`` feeds each bag's images at their recorded rate (header stamps) into a one-frame
mailbox read by a single worker that always takes the newest frame, as the live node does
(`hmr_ros.node.node.FrameSlot`): frames the worker is too slow for are dropped and counted
(``bags[].frames_dropped``). ``--workers N`` evaluates several bags in parallel worker processes
(spawned; each builds its own pipeline from the same parameters); the per-bag results are merged
in the order the bags were given, so the metrics equal those of one process.

``DIR/metrics.json`` (schema_version 1; all lengths in millimetres, 2D errors in pixels,
latencies in milliseconds; a value that could not be computed is ``null``)::

    {
      "schema_version": 1,
      "tool": "hmr-ros eval",
      "created": ISO-8601 UTC time,
      "interrupted": bool (true: stopped by Ctrl-C, the report holds what was computed),
      "config": {"model_dir", "backend", "merge_mode", "person_detector", "min_iou",
                 "realtime": bool, "workers": int,
                 "topics": {"image", "compressed_image", "camera_info", "detections",
                            "ground_truth"},
                 "occlusion_bins": [[lo, hi], ...], "invisible_below": 0.1},
      "bags": [{"path", "name", "status": "ok" | "partial" | "skipped", "reason": str | null,
                "output_bag": DIR/bags/NAME with --output-bags, else null,
                "frames": images processed, "frames_scored": frames with ground truth,
                "frames_failed": frames the pipeline skipped,
                "frames_dropped": frames dropped by --realtime (0 without), "wall_s", "fps"}],
      "overall": SUMMARY,
      "per_sequence": {bag name: SUMMARY},          # bags with frames (ok or partial)
      "by_occlusion": {"lo-hi": SUMMARY},            # ground-truth persons binned by occlusion
      "table2": null | {"occluded_min_share": 0.3,     # paper table 2, see below
                        "modes": {"visible" | "global" | "ks_highest" | "ks_matched":
                                  {"all" | "occluded": {"mpjpe_mm", "pa_mpjpe_mm",
                                                        "pve_mm": STAT}}}},
      "worst_frames": [{"bag", "frame": index in the bag, "stamp_ns", "mpjpe_mm": mean over
                        the frame's matched persons, "matched", "misses", "false_positives",
                        "image": "worst/NN_BAG_FRAME.jpg" | null}],   # worst first
      "latency_ms": {stage: {"count", "mean", "p50", "p95", "p99",
                             "histogram": {"edges": [31 ms], "counts": [30]}}},
      "throughput": {"frames", "wall_s", "fps", "pipeline_s", "pipeline_fps"}
    }

    SUMMARY = {
      "frames": scored frames (null in by_occlusion),
      "gt_persons", "pred_persons" (null in by_occlusion), "matched", "misses",
      "false_positives" (null in by_occlusion: a false positive has no ground truth),
      "mpjpe_mm", "pa_mpjpe_mm", "pve_mm", "kp2d_px": STAT,
      "visibility_accuracy": STAT (per matched person: share of the 24 parts whose predicted
                            ω > 0.5 agrees with ground-truth visibility > 0.5),
      "visibility_accuracy_per_part": [24 floats or null] (per part, over matched persons),
      "visibility_calibration": null | {"bins": [[0, 0.1], ..., [0.9, 1]] (predicted ω),
          "count", "mean_pred", "frac_visible" (share with ground truth > 0.5): [10 per bin,
          null where empty], "ece": expected calibration error, "per_part": [24 x {"count",
          "mean_pred", "frac_visible", "ece"}]}
    }
    STAT = {"count", "mean", "median"}              # over matched persons; null mean if count 0

Paper table 2 (``--table2``, on by default for VisHMR-family models): the pipeline merges each
person's stage outputs in all four modes (`PipelineParams.ablation_modes`: one stage run, four
merges), and each merge is scored against the matched person, over all persons and over those
with at least 30% of parts invisible. These are the regressor's own merges, before keypoint
refinement and smoothing; the main metrics are the deployed output. ``--worst N`` keeps the N
frames with the highest MPJPE and draws their overlays (predicted meshes coloured by ω, predicted
joints yellow, ground truth cyan, joined by white lines) into ``DIR/worst/``; ``--output-bags``
copies every bag's messages into ``DIR/bags/NAME`` (MCAP) with the predictions beside them on
``/hmr_eval/human_mesh`` and ``/hmr_eval/markers``, so Foxglove shows inputs, ground truth and
predictions together (and ``hmr-ros eval`` of that bag scores exactly as the original). ``--ray
ADDRESS`` runs the bags on a Ray cluster (`hmr_ros.eval.ray_fanout`).

Metrics (`hmr_ros.eval.metrics`): MPJPE root-aligned (pelvis), PA-MPJPE after a similarity
Procrustes fit, PVE root-aligned where the ground truth has vertices of the predicted topology,
2D keypoint error the mean pixel distance of the 24 projected joints, occlusion level the share
of the 24 parts whose ground-truth visibility is < 0.1, i.e. under 10% of the part seen (as
``hmr-ros evaluate``: eq. 1 rarely reaches 1 even for a fully visible part, a view shows about
half of it, so < 0.5 would call nearly everyone occluded; persons without ground-truth visibility
are not binned). Latency: the pipeline's per-stage ``FrameResult.timing`` plus ``decode`` (image
message to RGB); throughput: processed frames over the wall time of the replay loop (bag
reading, decoding, pipeline, scoring), ``pipeline_fps`` over the pipeline's own ``total``.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import functools
import json
import logging
import math
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np

from hmr_ros.eval.metrics import mpjpe, pa_mpjpe, pve, visibility_accuracy

__all__ = ["SCHEMA_VERSION", "DEFAULT_TOPICS", "OCCLUSION_BINS", "GroundTruthPerson",
           "PredictedPerson", "match_persons", "score_frame", "Accumulator", "evaluate_bags",
           "evaluate_bag", "merge_results", "EvalInterrupted", "write_report", "build_pipeline",
           "add_arguments", "run"]

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
NUM_PARTS = 24
DEFAULT_TOPICS = {
    "image": "/camera/image_raw",
    "compressed_image": "/camera/image_raw/compressed",
    "camera_info": "/camera/camera_info",
    "detections": "/ground_truth/detections",
    "ground_truth": "/ground_truth/human_mesh",
}
#: a part is invisible when its ground-truth visibility is below this (eq. 1's seen share)
INVISIBLE_BELOW = 0.1
#: occlusion level bins (share of invisible parts), half-open but the last
OCCLUSION_BINS: Tuple[Tuple[float, float], ...] = ((0.0, 0.1), (0.1, 0.3), (0.3, 0.5),
                                                   (0.5, 1.0))
#: ``--output-bags``: where the predictions go beside the copied inputs
PREDICTION_TOPIC = "/hmr_eval/human_mesh"
PREDICTION_MARKERS = "/hmr_eval/markers"
_PENDING_LIMIT = 30  # frames waiting for their detections / ground truth before running anyway


# -- persons and matching ---------------------------------------------------------------------


@dataclass
class PredictedPerson:
    box: np.ndarray  # (4,) x0, y0, x1, y1 pixels
    joints: np.ndarray  # (24, 3) metres, camera frame
    vertices: Optional[np.ndarray] = None  # (V, 3)
    keypoints2d: Optional[np.ndarray] = None  # (24, 2) pixels
    visibility: Optional[np.ndarray] = None  # (24,) ω
    #: {merge mode: (vertices, joints)}: the table-2 merges of the same stage outputs
    ablation: Optional[Dict[str, Tuple[np.ndarray, np.ndarray]]] = None

    @classmethod
    def from_result(cls, p: Any) -> "PredictedPerson":
        abl = getattr(p, "ablation", None)
        return cls(np.asarray(p.bbox, np.float64), np.asarray(p.joints, np.float64),
                   np.asarray(p.vertices, np.float64), np.asarray(p.keypoints2d, np.float64),
                   np.asarray(p.visibility, np.float64),
                   None if abl is None else {m: (np.asarray(v, np.float64),
                                                 np.asarray(j, np.float64))
                                             for m, (v, j) in abl.items()})


@dataclass
class GroundTruthPerson:
    box: np.ndarray
    joints: np.ndarray
    vertices: Optional[np.ndarray] = None
    keypoints2d: Optional[np.ndarray] = None
    visibility: Optional[np.ndarray] = None

    @classmethod
    def from_message(cls, h: Any, visibility: Any = None) -> "GroundTruthPerson":
        r = h.roi
        box = np.array([r.x_offset, r.y_offset, r.x_offset + r.width, r.y_offset + r.height],
                       np.float64)
        joints = np.asarray(h.joints, np.float64)
        verts = np.asarray(h.vertices, np.float64)
        kp = np.asarray(h.keypoints_2d, np.float64)
        vis = None if visibility is None else np.asarray(visibility.visibility, np.float64)
        return cls(box, joints.reshape(-1, 3) if joints.size == 72 else np.zeros((0, 3)),
                   verts.reshape(-1, 3) if verts.size and verts.size % 3 == 0 else None,
                   kp.reshape(-1, 2) if kp.size == 48 else None,
                   vis if vis is not None and vis.size == NUM_PARTS else None)

    @property
    def occlusion(self) -> Optional[float]:
        """Share of invisible parts (ground truth < `INVISIBLE_BELOW`; None without it)."""
        if self.visibility is None:
            return None
        return float(np.mean(self.visibility < INVISIBLE_BELOW))


def _box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    from hmr_ros.runtime.boxes import Box, iou_matrix

    return iou_matrix([Box(*map(float, x)) for x in a], [Box(*map(float, x)) for x in b])


def match_persons(preds: Sequence[Any], gts: Sequence[Any], min_iou: float = 0.3
                  ) -> Tuple[List[Tuple[int, int]], List[int], List[int]]:
    """Hungarian assignment of predictions to ground-truth persons on box IoU, joint distance
    (mean, root-relative skeletons not assumed: camera frame) as tie-breaker. Returns
    (pairs (pred index, gt index), unmatched preds, unmatched gts); pairs under ``min_iou``
    are not matches."""
    from scipy.optimize import linear_sum_assignment

    if not preds or not gts:
        return [], list(range(len(preds))), list(range(len(gts)))
    iou = _box_iou(np.stack([p.box for p in preds]), np.stack([g.box for g in gts]))
    dist = np.zeros_like(iou)
    for i, p in enumerate(preds):
        for j, g in enumerate(gts):
            if p.joints.shape == g.joints.shape and p.joints.size:
                dist[i, j] = float(np.linalg.norm(p.joints - g.joints, axis=-1).mean())
    # IoU decides; the joint distance (squashed into [0, 1e-3)) only orders equal overlaps
    cost = (1.0 - iou) + 1e-3 * dist / (1.0 + dist)
    rows, cols = linear_sum_assignment(cost)
    pairs = [(int(r), int(c)) for r, c in zip(rows, cols) if iou[r, c] >= min_iou]
    used_p = {r for r, _ in pairs}
    used_g = {c for _, c in pairs}
    return (pairs, [i for i in range(len(preds)) if i not in used_p],
            [j for j in range(len(gts)) if j not in used_g])


def _mesh_errors(candidates: Sequence[Tuple[np.ndarray, Optional[np.ndarray]]], g: Any
                 ) -> List[Dict[str, Optional[float]]]:
    """MPJPE, PA-MPJPE, PVE (mm) of predicted (joints, vertices) pairs against ``g``, all in
    one batched call per metric (the deployed output and table 2's merges of one person)."""
    out: List[Dict[str, Optional[float]]] = [
        {"mpjpe_mm": None, "pa_mpjpe_mm": None, "pve_mm": None} for _ in candidates]
    if not g.joints.size or any(j.shape != g.joints.shape for j, _ in candidates):
        return out
    pj = np.stack([j for j, _ in candidates])
    gj = np.broadcast_to(g.joints, pj.shape)
    for o, e, pa in zip(out, mpjpe(pj, gj), pa_mpjpe(pj, gj)):
        o["mpjpe_mm"], o["pa_mpjpe_mm"] = float(e), float(pa)
    if g.vertices is not None and all(v is not None and v.shape == g.vertices.shape
                                      for _, v in candidates):
        pv = np.stack([v for _, v in candidates])
        for o, e in zip(out, pve(pv, np.broadcast_to(g.vertices, pv.shape), pj, gj)):
            o["pve_mm"] = float(e)
    return out


def person_errors(p: Any, g: Any) -> Dict[str, Any]:
    """Errors of one matched pair: mpjpe_mm, pa_mpjpe_mm, pve_mm, kp2d_px (None where the
    ground truth lacks the quantity), visibility agreement per part, and the same mesh errors
    per table-2 merge mode (``table2``) when the prediction carries them."""
    out: Dict[str, Any] = {"kp2d_px": None, "visibility_parts": None, "table2": None}
    modes = list(getattr(p, "ablation", None) or {})
    errors = _mesh_errors([(p.joints, p.vertices)] +
                          [(p.ablation[m][1], p.ablation[m][0]) for m in modes], g)
    out.update(errors[0])
    if modes:
        out["table2"] = dict(zip(modes, errors[1:]))
    if g.keypoints2d is not None and p.keypoints2d is not None \
            and g.keypoints2d.shape == p.keypoints2d.shape:
        out["kp2d_px"] = float(np.linalg.norm(p.keypoints2d - g.keypoints2d, axis=-1).mean())
    if g.visibility is not None and p.visibility is not None \
            and g.visibility.shape == p.visibility.shape and np.isfinite(p.visibility).all():
        out["visibility_parts"] = ((p.visibility > 0.5) == (g.visibility > 0.5)).astype(float)
        out["visibility_pred"], out["visibility_gt"] = p.visibility, g.visibility
    return out


def occlusion_bin(share: Optional[float]) -> Optional[str]:
    if share is None:
        return None
    for lo, hi in OCCLUSION_BINS:
        if lo <= share < hi or (hi == OCCLUSION_BINS[-1][1] and share == hi):
            return f"{lo:g}-{hi:g}"
    return None


# -- accumulation -------------------------------------------------------------------------------


_ERRORS = ("mpjpe_mm", "pa_mpjpe_mm", "pve_mm", "kp2d_px")
_MESH_ERRORS = ("mpjpe_mm", "pa_mpjpe_mm", "pve_mm")
#: paper table 2's merge modes, in the paper's order (`hmr_ros.runtime.merge.MODES`)
_TABLE2_MODES = ("visible", "global", "ks_highest", "ks_matched")
#: table 2's "occluded" rows: persons with at least this share of parts invisible
OCCLUDED_MIN_SHARE = 0.3
CALIBRATION_BINS = 10


@dataclass
class Accumulator:
    """Counts and per-person errors of one group (overall, a sequence, an occlusion bin)."""

    frames: int = 0
    gt_persons: int = 0
    pred_persons: int = 0
    matched: int = 0
    misses: int = 0
    false_positives: int = 0
    errors: Dict[str, List[float]] = field(default_factory=lambda: {k: [] for k in _ERRORS})
    vis_pred: List[np.ndarray] = field(default_factory=list)
    vis_gt: List[np.ndarray] = field(default_factory=list)
    #: table 2: {"all" | "occluded": {mode: {metric: [values]}}}
    table2: Dict[str, Dict[str, Dict[str, List[float]]]] = field(
        default_factory=lambda: {"all": {}, "occluded": {}})

    def add_match(self, err: Dict[str, Any], occluded: bool = False) -> None:
        self.matched += 1
        for k in _ERRORS:
            if err.get(k) is not None:
                self.errors[k].append(err[k])
        if err.get("visibility_parts") is not None:
            self.vis_pred.append(err["visibility_pred"])
            self.vis_gt.append(err["visibility_gt"])
        for group in ("all", "occluded") if occluded else ("all",):
            for mode, errs in (err.get("table2") or {}).items():
                slot = self.table2[group].setdefault(mode, {k: [] for k in _MESH_ERRORS})
                for k in _MESH_ERRORS:
                    if errs.get(k) is not None:
                        slot[k].append(errs[k])

    def table2_summary(self) -> Optional[Dict[str, Any]]:
        """Paper table 2 (``report["table2"]``), or None when no merge modes were scored."""
        modes = [m for m in _TABLE2_MODES if m in self.table2["all"]]
        if not modes:
            return None
        empty = {k: [] for k in _MESH_ERRORS}
        return {"occluded_min_share": OCCLUDED_MIN_SHARE,
                "modes": {m: {g: {k: _stat(self.table2[g].get(m, empty)[k])
                                  for k in _MESH_ERRORS}
                              for g in ("all", "occluded")} for m in modes}}

    def summary(self, frames: bool = True, predictions: bool = True) -> Dict[str, Any]:
        out: Dict[str, Any] = {
            "frames": self.frames if frames else None, "gt_persons": self.gt_persons,
            "pred_persons": self.pred_persons if predictions else None,
            "matched": self.matched, "misses": self.misses,
            "false_positives": self.false_positives if predictions else None}
        for k in _ERRORS:
            out[k] = _stat(self.errors[k])
        if self.vis_pred:
            pred, gt = np.stack(self.vis_pred), np.stack(self.vis_gt)
            per_part, _ = visibility_accuracy(pred, gt)
            per_person = ((pred > 0.5) == (gt > 0.5)).mean(1)
            out["visibility_accuracy"] = _stat(list(per_person))
            out["visibility_accuracy_per_part"] = [_finite(v) for v in per_part]
            out["visibility_calibration"] = visibility_calibration(pred, gt)
        else:
            out["visibility_accuracy"] = _stat([])
            out["visibility_accuracy_per_part"] = None
            out["visibility_calibration"] = None
        return out


def _reliability(pred: np.ndarray, visible: np.ndarray) -> Dict[str, Any]:
    """Reliability of ω samples against ground truth (bool): per predicted-ω bin the count,
    mean ω and the share truly visible; ECE = count-weighted mean |mean ω - share visible|."""
    idx = np.clip((pred * CALIBRATION_BINS).astype(int), 0, CALIBRATION_BINS - 1)
    count, mean_pred, frac = [], [], []
    ece, n = 0.0, len(pred)
    for b in range(CALIBRATION_BINS):
        sel = idx == b
        c = int(sel.sum())
        count.append(c)
        if c:
            mp, fv = float(pred[sel].mean()), float(visible[sel].mean())
            ece += c / n * abs(mp - fv)
            mean_pred.append(mp)
            frac.append(fv)
        else:
            mean_pred.append(None)
            frac.append(None)
    return {"count": count, "mean_pred": mean_pred, "frac_visible": frac,
            "ece": float(ece) if n else None}


def visibility_calibration(pred: np.ndarray, gt: np.ndarray) -> Optional[Dict[str, Any]]:
    """Calibration of the predicted part visibility ω (N x 24) against ground-truth
    visibility > 0.5: pooled over parts, and per part (SUMMARY ``visibility_calibration``)."""
    pred = np.clip(np.nan_to_num(np.asarray(pred, np.float64), nan=0.0), 0.0, 1.0)
    visible = np.asarray(gt, np.float64) > 0.5
    if not pred.size:
        return None
    out = {"bins": [[b / CALIBRATION_BINS, (b + 1) / CALIBRATION_BINS]
                    for b in range(CALIBRATION_BINS)]}
    out.update(_reliability(pred.reshape(-1), visible.reshape(-1)))
    out["per_part"] = [_reliability(pred[:, k], visible[:, k]) for k in range(pred.shape[1])]
    return out


def _finite(v: Any) -> Optional[float]:
    v = float(v)
    return v if math.isfinite(v) else None


def _stat(values: Sequence[float]) -> Dict[str, Any]:
    vals = np.asarray([v for v in values if v is not None and math.isfinite(v)], np.float64)
    if not len(vals):
        return {"count": 0, "mean": None, "median": None}
    return {"count": int(len(vals)), "mean": float(vals.mean()),
            "median": float(np.median(vals))}


def score_frame(preds: Sequence[Any], gts: Sequence[Any], groups: Iterable[Accumulator],
                by_occlusion: Dict[str, Accumulator], min_iou: float = 0.3
                ) -> Tuple[List[Dict[str, Any]], List[Tuple[int, int]], List[int], List[int]]:
    """Match one frame and add it to every accumulator in ``groups`` (and the occlusion bins).
    Returns (errors per matched pair, pairs, unmatched predictions, missed persons)."""
    groups = list(groups)
    pairs, fp, missed = match_persons(preds, gts, min_iou)
    for acc in groups:
        acc.frames += 1
        acc.gt_persons += len(gts)
        acc.pred_persons += len(preds)
        acc.misses += len(missed)
        acc.false_positives += len(fp)
    errors = []
    for i, j in pairs:
        err = person_errors(preds[i], gts[j])
        errors.append(err)
        share = gts[j].occlusion
        occluded = share is not None and share >= OCCLUDED_MIN_SHARE
        for acc in groups:
            acc.add_match(err, occluded)
        key = occlusion_bin(share)
        if key:
            by_occlusion[key].add_match(err, occluded)
    for j in range(len(gts)):
        key = occlusion_bin(gts[j].occlusion)
        if key:
            by_occlusion[key].gt_persons += 1
            if j in missed:
                by_occlusion[key].misses += 1
    return errors, pairs, fp, missed


# -- bags -------------------------------------------------------------------------------------------


def _stamp_ns(header: Any) -> int:
    return int(header.stamp.sec) * 1_000_000_000 + int(header.stamp.nanosec)


def detection_boxes(msg: Any, classes: Sequence[str] = ("person",)) -> List[Any]:
    """A Detection2DArray as the pipeline's boxes, read exactly as the node reads them."""
    from hmr_ros.node.node import detection_boxes as node_detection_boxes

    return node_detection_boxes(msg, classes)


@dataclass
class BagResult:
    path: str
    name: str
    status: str = "ok"
    reason: Optional[str] = None
    frames: int = 0
    frames_scored: int = 0
    frames_failed: int = 0
    frames_dropped: int = 0
    wall_s: float = 0.0
    acc: Accumulator = field(default_factory=Accumulator)
    occlusion: Dict[str, Accumulator] = field(default_factory=dict)
    timings: Dict[str, List[float]] = field(default_factory=dict)
    #: the bag's worst frames, worst first: (record, overlay JPEG bytes or None)
    worst: List[Tuple[Dict[str, Any], Optional[bytes]]] = field(default_factory=list)
    output_bag: Optional[str] = None

    def record(self) -> Dict[str, Any]:
        return {"path": self.path, "name": self.name, "status": self.status,
                "reason": self.reason, "output_bag": self.output_bag, "frames": self.frames,
                "frames_scored": self.frames_scored, "frames_failed": self.frames_failed,
                "frames_dropped": self.frames_dropped, "wall_s": self.wall_s,
                "fps": self.frames / self.wall_s if self.wall_s > 0 else None}


def _bins() -> Dict[str, Accumulator]:
    return OrderedDict((f"{lo:g}-{hi:g}", Accumulator()) for lo, hi in OCCLUSION_BINS)


def enable_table2(pipeline: Any) -> bool:
    """Ask ``pipeline`` for paper table 2's merges of every person (VisHMR-family regressors:
    one stage run, four merges); False when its regressor cannot re-merge."""
    import dataclasses

    params = getattr(pipeline, "params", None)
    if params is None or not hasattr(getattr(pipeline, "regressor", None), "remerge"):
        return False
    if tuple(params.ablation_modes) != _TABLE2_MODES:
        pipeline.params = dataclasses.replace(params, ablation_modes=_TABLE2_MODES)
    return True


def evaluate_bag(path: Any, pipeline: Any, topics: Dict[str, str], *, min_iou: float = 0.3,
                 classes: Sequence[str] = ("person",), progress: bool = False,
                 name: Optional[str] = None, realtime: bool = False, table2: bool = True,
                 worst_frames: int = 6, body_model: str = "procedural",
                 output_bag_dir: Optional[str] = None) -> BagResult:
    """Replay one bag through ``pipeline`` (anything with the `FramePipeline.process`
    signature) and score it. Raises `hmr_ros.bag.BagError` for a bag that cannot be opened; a
    bag that breaks after frames were run gives ``status == "partial"`` with those frames.
    ``realtime``: images at their recorded rate into a newest-frame mailbox (drops counted).
    ``table2``: score paper table 2's merge modes too (VisHMR-family regressors).
    ``worst_frames``: keep that many frames with the highest MPJPE, with an overlay rendered
    on the ``body_model`` (its faces and parts). ``output_bag_dir``: write
    ``DIR/NAME`` (rosbag2, MCAP) holding the bag's messages and the predictions beside them.
    Ctrl-C raises `EvalInterrupted` carrying the partial result."""
    from hmr_ros.bag import BagReader
    from hmr_ros.runtime import Header
    from hmr_ros.transport import images

    path = Path(path)
    res = BagResult(str(path), name or path.name.replace(".", "_"), occlusion=_bins())
    if table2:
        enable_table2(pipeline)
    worst = _WorstFrames(worst_frames, res.name)
    t_start = time.perf_counter()
    with BagReader(path) as bag, _PredictionBag(output_bag_dir, res, body_model) as out_bag:
        present = {s.topic: s for s in bag.topics()}
        image_topic = next((topics.get(k) for k in ("image", "compressed_image")
                            if topics.get(k) in present), None)
        if image_topic is None:
            from hmr_ros.bag import BagError

            raise BagError(f"{path}: none of the image topics "
                           f"{[topics.get('image'), topics.get('compressed_image')]} is in the "
                           f"bag (it has {sorted(present)})")
        det_topic = topics.get("detections") if topics.get("detections") in present else None
        gt_topic = topics.get("ground_truth") if topics.get("ground_truth") in present else None
        info_topic = topics.get("camera_info") if topics.get("camera_info") in present else None
        wanted = [t for t in (image_topic, det_topic, gt_topic, info_topic) if t]
        out_bag.add_inputs(present.values())
        total = present[image_topic].count
        bar = None
        if progress:
            from tqdm import tqdm

            bar = tqdm(total=total, desc=res.name, unit="frame", leave=False)

        pending: "OrderedDict[int, Dict[str, Any]]" = OrderedDict()
        infos: Dict[int, Any] = {}
        last_info: Dict[str, Any] = {}

        def run_frame(stamp: int, item: Dict[str, Any]) -> None:
            msg = item["image"]
            t0 = time.perf_counter()
            try:
                rgb = images.message_to_rgb(msg, item["type"])
            except images.ImageMessageError as exc:
                log.warning("%s: frame %d: bad image: %s", path, stamp, exc)
                res.frames_failed += 1
                return
            decode_s = time.perf_counter() - t0
            info = infos.get(stamp) or last_info.get(msg.header.frame_id)
            K = None
            if info is not None and (not info.width or info.width == rgb.shape[1]) and \
                    (not info.height or info.height == rgb.shape[0]):
                K = np.asarray(info.k, np.float64).reshape(3, 3)
            boxes = None
            if det_topic:
                det = item.get("detections")
                boxes = detection_boxes(det, classes) if det is not None else []
            result = pipeline.process(rgb, K, boxes,
                                      Header(stamp_ns=stamp, frame_id=msg.header.frame_id))
            res.frames += 1
            if bar is not None:
                bar.update(1)
            out_bag.add_prediction(result, rgb.shape)
            if result.skipped:
                res.frames_failed += 1
                return
            timing = dict(result.timing)
            timing["decode"] = decode_s
            for k, v in timing.items():
                res.timings.setdefault(k, []).append(float(v))
            gt = item.get("ground_truth")
            if gt is None:
                return
            vis = {v.body_id: v for v in gt.visibility}
            gts = [GroundTruthPerson.from_message(h, vis.get(h.body_id)) for h in gt.humans]
            preds = [PredictedPerson.from_result(p) for p in result.persons]
            res.frames_scored += 1
            errors, pairs, fp, missed = score_frame(preds, gts, [res.acc], res.occlusion,
                                                    min_iou)
            worst.offer(res.frames - 1, stamp, errors, pairs, fp, missed, rgb, preds, gts,
                        result.intrinsics)

        def ready(item: Dict[str, Any]) -> bool:
            return "image" in item and (not det_topic or "detections" in item) and \
                (not gt_topic or "ground_truth" in item)

        slot = worker = None
        worker_error: List[BaseException] = []
        feeding_done = threading.Event()
        pace: Dict[str, float] = {}
        if realtime:
            from hmr_ros.node.node import FrameSlot

            slot = FrameSlot()

            def work() -> None:
                try:
                    while True:
                        got = slot.take(0.05)
                        if got is None:
                            if not feeding_done.is_set():
                                continue
                            got = slot.take(0.0)  # put just before the end was signalled
                            if got is None:
                                return
                        run_frame(*got)
                except BaseException as exc:  # noqa: BLE001 - re-raised in the reader
                    worker_error.append(exc)
                    feeding_done.set()

            worker = threading.Thread(target=work, name="eval-realtime", daemon=True)
            worker.start()

        def dispatch(stamp: int, item: Dict[str, Any]) -> None:
            if slot is None:
                run_frame(stamp, item)
                return
            if worker_error:
                raise worker_error[0]
            now = time.perf_counter()
            if "t0" not in pace:
                pace["t0"], pace["s0"] = now, stamp
            wait = pace["t0"] + (stamp - pace["s0"]) / 1e9 - now
            if wait > 0:
                time.sleep(wait)
            if slot.put((stamp, item)):
                res.frames_dropped += 1

        def finish_worker() -> None:
            if worker is None:
                return
            feeding_done.set()
            worker.join()
            if worker_error:
                raise worker_error[0]

        def flush(force: bool = False) -> None:
            while pending:
                stamp, item = next(iter(pending.items()))
                if "image" not in item:
                    if force or len(pending) > _PENDING_LIMIT:
                        pending.popitem(last=False)  # no image for it: nothing to run
                        continue
                    return
                if not (force or ready(item) or len(pending) > _PENDING_LIMIT):
                    return
                pending.popitem(last=False)
                dispatch(stamp, item)

        try:
            failure: Optional[Exception] = None
            try:
                for m in bag.messages(None if out_bag.active else wanted):
                    out_bag.copy(m)
                    if m.topic not in wanted:
                        continue
                    msg = m.decode()
                    stamp = _stamp_ns(msg.header)
                    if m.topic == info_topic:
                        infos[stamp] = msg
                        last_info[msg.header.frame_id] = msg
                        if len(infos) > 2 * _PENDING_LIMIT:
                            infos.pop(next(iter(infos)))
                        continue
                    key = ("image" if m.topic == image_topic else
                           "detections" if m.topic == det_topic else "ground_truth")
                    item = pending.setdefault(stamp, {})
                    item[key] = msg
                    if key == "image":
                        item["type"] = m.type_name
                    flush()
                flush(force=True)
                finish_worker()
            except Exception as exc:  # noqa: BLE001 - keep the frames read before it broke
                failure = exc
            if failure is not None:
                if worker is not None:
                    feeding_done.set()
                    worker.join()
                    if worker_error and not isinstance(worker_error[0], Exception):
                        raise worker_error[0]  # Ctrl-C seen by the worker
                if res.frames == 0 and not any("image" in it for it in pending.values()):
                    raise failure
                reason = str(failure) if type(failure).__name__ == "BagError" else \
                    f"{type(failure).__name__}: {failure}"
                res.status, res.reason = "partial", reason
                slot = None  # what was complete before the failure runs inline
                try:
                    flush(force=True)
                except Exception:  # noqa: BLE001 - the pipeline itself may be what broke
                    pass
                log.warning("%s: broke after %d frames, keeping them: %s", path, res.frames,
                            reason)
        except KeyboardInterrupt as exc:
            feeding_done.set()
            if worker is not None:
                worker.join(timeout=10.0)  # its frame in flight, then it stops
            res.status, res.reason = "partial", "interrupted"
            res.wall_s = time.perf_counter() - t_start
            raise EvalInterrupted(res) from exc
        finally:
            if bar is not None:
                bar.close()
            res.wall_s = time.perf_counter() - t_start
            res.worst = worst.render(body_model)
    return res


class _WorstFrames:
    """The ``keep`` frames with the highest MPJPE (mean over matched persons) of one bag, with
    what their overlays need; rendered once at the end of the bag. Frames closer than
    ``SPACING`` to a worse one kept are passed over (one bad moment is one picture), so
    ``4 x keep`` candidates are held."""

    SPACING = 10

    def __init__(self, keep: int, bag_name: str) -> None:
        self.keep, self.bag_name = int(max(0, keep)), bag_name
        self._capacity = 4 * self.keep
        self._heap: List[Tuple[float, int, Dict[str, Any], Any]] = []

    def offer(self, index: int, stamp: int, errors: Sequence[Dict[str, Any]],
              pairs: Sequence[Tuple[int, int]], fp: Sequence[int], missed: Sequence[int],
              rgb: np.ndarray, preds: Sequence[Any], gts: Sequence[Any], K: Any) -> None:
        import heapq

        vals = [e["mpjpe_mm"] for e in errors if e.get("mpjpe_mm") is not None]
        if not self.keep or not vals:
            return
        score = float(np.mean(vals))
        if len(self._heap) == self._capacity and score <= self._heap[0][0]:
            return
        record = {"bag": self.bag_name, "frame": int(index), "stamp_ns": int(stamp),
                  "mpjpe_mm": score, "matched": len(pairs), "misses": len(missed),
                  "false_positives": len(fp), "image": None}
        small, scale = _thumbnail(rgb)
        item = (score, int(index), record,
                (small, scale, list(preds), list(gts), list(pairs), K))
        if len(self._heap) < self._capacity:
            heapq.heappush(self._heap, item)
        else:
            heapq.heapreplace(self._heap, item)

    def render(self, body_model: str) -> List[Tuple[Dict[str, Any], Optional[bytes]]]:
        """Worst first: (record, JPEG of the overlay, or None where it could not be drawn)."""
        if not self._heap:
            return []
        try:
            body = _body_model(body_model)
        except Exception as exc:  # noqa: BLE001 - the metrics matter more than the pictures
            log.warning("no overlays for the worst frames (body model %s): %s", body_model, exc)
            body = None
        chosen: List[Any] = []
        for item in sorted(self._heap, key=lambda x: -x[0]):
            if len(chosen) < self.keep and all(abs(item[1] - c[1]) >= self.SPACING
                                               for c in chosen):
                chosen.append(item)
        out = []
        for _, _, record, (rgb, scale, preds, gts, pairs, K) in chosen:
            jpeg = None
            try:
                jpeg = _overlay_jpeg(rgb, preds, gts, pairs, K, body, scale)
            except Exception as exc:  # noqa: BLE001
                log.warning("overlay of %s frame %d failed: %s", self.bag_name,
                            record["frame"], exc)
            out.append((record, jpeg))
        self._heap = []
        return out


@functools.lru_cache(maxsize=2)
def _body_model(name: str) -> Any:
    """The body model the overlays draw (loaded once per process, not once per bag)."""
    from hmr_ros.body import load_body_model

    return load_body_model(name)


OVERLAY_MAX_SIDE = 960


def _thumbnail(rgb: np.ndarray) -> Tuple[np.ndarray, float]:
    """A worst-frame candidate's image, at most `OVERLAY_MAX_SIDE` a side (4 x N candidates
    of a 4K stream would otherwise hold gigabytes), and its scale from the frame."""
    import cv2

    scale = min(1.0, OVERLAY_MAX_SIDE / max(rgb.shape[:2]))
    if scale >= 1.0:
        return rgb.copy(), 1.0
    size = (max(1, round(rgb.shape[1] * scale)), max(1, round(rgb.shape[0] * scale)))
    return cv2.resize(rgb, size, interpolation=cv2.INTER_AREA), scale


def _overlay_jpeg(rgb: np.ndarray, preds: Sequence[Any], gts: Sequence[Any],
                  pairs: Sequence[Tuple[int, int]], K: Any, body: Any,
                  scale: float = 1.0) -> bytes:
    """Predicted meshes (parts coloured by ω) over the frame, predicted joints in yellow and
    the ground truth's in cyan, matched pairs' joints joined by white lines, boxes (predicted
    yellow, true cyan)."""
    import cv2

    from hmr_ros.viz.overlay import draw_overlay

    meshes = [p for p in preds if p.vertices is not None and np.isfinite(p.vertices).all()]
    if K is not None:  # the image may be a thumbnail: pixels scale, the 3D scene does not
        K = np.diag([scale, scale, 1.0]) @ np.asarray(K, np.float64)
    img = (draw_overlay(rgb, meshes, body.faces, body.part, K)
           if body is not None and meshes and K is not None else rgb.copy())
    img = np.ascontiguousarray(img)

    def pt(xy: np.ndarray) -> Tuple[int, int]:
        return int(round(float(xy[0]) * scale)), int(round(float(xy[1]) * scale))

    for people, color in ((gts, (0, 220, 255)), (preds, (255, 220, 0))):
        for q in people:
            if np.isfinite(q.box).all():
                cv2.rectangle(img, pt(q.box[:2]), pt(q.box[2:]), color, 1, cv2.LINE_AA)
    match_of = {j: preds[i] for i, j in pairs}
    for j, g in enumerate(gts):
        if g.keypoints2d is None:
            continue
        match = match_of.get(j)
        for k, xy in enumerate(g.keypoints2d):
            if not np.isfinite(xy).all():
                continue
            cv2.circle(img, pt(xy), 2, (0, 220, 255), -1, cv2.LINE_AA)
            if match is not None and match.keypoints2d is not None and \
                    match.keypoints2d.shape == g.keypoints2d.shape and \
                    np.isfinite(match.keypoints2d[k]).all():
                cv2.line(img, pt(xy), pt(match.keypoints2d[k]), (255, 255, 255), 1,
                         cv2.LINE_AA)
    for p in preds:
        if p.keypoints2d is None:
            continue
        for xy in p.keypoints2d:
            if np.isfinite(xy).all():
                cv2.circle(img, pt(xy), 2, (255, 220, 0), -1, cv2.LINE_AA)
    ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(img[..., ::-1]),
                           [cv2.IMWRITE_JPEG_QUALITY, 85])
    if not ok:
        raise RuntimeError("JPEG encoding failed")
    return bytes(buf)


class _PredictionBag:
    """``--output-bags``: a copy of the input bag's messages with the predictions beside them
    (``PREDICTION_TOPIC``, the node's HumanMeshArray; ``PREDICTION_MARKERS``, its RViz /
    Foxglove markers), so Foxglove shows inputs, ground truth and predictions together. A no-op
    without a folder; one writer per bag (safe with worker processes)."""

    def __init__(self, folder: Optional[str], res: BagResult, body_model: str) -> None:
        self.folder, self.res, self.body_model = folder, res, body_model
        self.active = folder is not None
        self._writer: Any = None
        self._lock = threading.Lock()
        self._ids: Any = None
        self._body: Any = None

    def __enter__(self) -> "_PredictionBag":
        if self.active:
            from hmr_ros.bag.writer import BagWriter
            from hmr_ros.node.outputs import BodyIds

            target = Path(self.folder) / self.res.name
            if target.exists():
                import shutil

                shutil.rmtree(target)  # a previous run's copy of this bag: replaced
            target.parent.mkdir(parents=True, exist_ok=True)
            self._writer = BagWriter(target, storage="mcap")
            self._writer.open()
            self._body = _body_model(self.body_model)
            self._ids = BodyIds(seed=0)
            self.res.output_bag = str(target)
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._writer is not None:
            with self._lock:
                self._writer.close()
                self._writer = None

    def add_inputs(self, summaries: Iterable[Any]) -> None:
        if self._writer is None:
            return
        from hmr_ros.bag.writer import QOS_DEFAULT

        for t in summaries:  # as recorded: a latched topic (mesh faces) stays latched
            qos = QOS_DEFAULT.with_overrides(durability=t.durability, reliability=t.reliability)
            self._writer.add_topic(t.topic, t.type_name, qos)
        self._writer.add_topic(PREDICTION_TOPIC, "hmr_ros/msg/HumanMeshArray")
        self._writer.add_topic(PREDICTION_MARKERS, "visualization_msgs/msg/MarkerArray")

    def copy(self, m: Any) -> None:
        if self._writer is not None:
            with self._lock:
                self._writer.write(m.topic, m.timestamp_ns, m.data)

    def add_prediction(self, result: Any, shape: Tuple[int, ...]) -> None:
        if self._writer is None or result.skipped:
            return
        from hmr_ros.node import outputs

        h = result.header
        header = outputs.header_message(h.stamp_ns, h.frame_id)
        ids = [self._ids.get(p.track_id) for p in result.persons]
        body = self._body
        mesh, _ = outputs.human_mesh_array(result, header, ids, body.name, body.num_vertices,
                                           int(shape[1]), int(shape[0]))
        markers = outputs.marker_array(result, header, ids, body.faces, body.part,
                                       [p.track_id for p in result.persons])
        with self._lock:
            self._writer.write(PREDICTION_TOPIC, h.stamp_ns, mesh)
            self._writer.write(PREDICTION_MARKERS, h.stamp_ns, markers)


class EvalInterrupted(KeyboardInterrupt):
    """Ctrl-C during `evaluate_bag`; ``result`` holds the frames computed so far."""

    def __init__(self, result: "BagResult") -> None:
        super().__init__("interrupted")
        self.result = result


# -- the pipeline ---------------------------------------------------------------------------------


def node_config(overrides: Optional[Dict[str, Any]] = None) -> Any:
    """The node's `NodeConfig` (validated exactly as the node validates it)."""
    from hmr_ros.node.params import config_from_overrides

    return config_from_overrides(overrides)


def build_pipeline(overrides: Optional[Dict[str, Any]] = None) -> Tuple[Any, Any, str, Any]:
    """(pipeline, body, backend name, config): the node's own loader on the node's params."""
    from hmr_ros.node.node import build_pipeline as node_build_pipeline

    return node_build_pipeline(overrides)


# -- report -----------------------------------------------------------------------------------------


LATENCY_HISTOGRAM_BINS = 30


def _latency(timings: Dict[str, List[float]]) -> Dict[str, Any]:
    """Per stage: count, mean, p50/p95/p99 and a histogram (ms; equal bins from 0 to 1.25 x
    p99, the last bin also holding everything above)."""
    out = {}
    for stage in sorted(timings):
        ms = np.asarray(timings[stage], np.float64) * 1000.0
        p99 = float(np.percentile(ms, 99))
        top = max(1.25 * p99, 1e-3)
        edges = np.linspace(0.0, top, LATENCY_HISTOGRAM_BINS + 1)
        counts, _ = np.histogram(np.clip(ms, 0.0, top), bins=edges)
        out[stage] = {"count": int(len(ms)), "mean": float(ms.mean()),
                      "p50": float(np.percentile(ms, 50)), "p95": float(np.percentile(ms, 95)),
                      "p99": p99, "histogram": {"edges": [float(e) for e in edges],
                                                "counts": [int(c) for c in counts]}}
    return out


def _bag_names(bags: Sequence[Any]) -> List[str]:
    out, seen = [], {}
    for path in bags:
        base = Path(path).name.replace(".", "_") or str(path)
        seen[base] = seen.get(base, 0) + 1
        out.append(base if seen[base] == 1 else f"{base}_{seen[base]}")
    return out


def _skip_reason(exc: BaseException) -> str:
    return str(exc) if type(exc).__name__ == "BagError" else f"{type(exc).__name__}: {exc}"


def _evaluate_one(path: Any, pipeline: Any, topics: Dict[str, str], name: str,
                  **kwargs: Any) -> BagResult:
    """One bag; an unreadable one becomes a ``skipped`` result (Ctrl-C passes through)."""
    try:
        return evaluate_bag(path, pipeline, topics, name=name, **kwargs)
    except EvalInterrupted:
        raise
    except Exception as exc:  # noqa: BLE001 - a broken bag must not lose the others
        reason = _skip_reason(exc)
        log.warning("skipping %s: %s", path, reason)
        return BagResult(str(path), name, status="skipped", reason=reason)


_WORKER_PIPELINE: Any = None


def _worker_init(overrides: Dict[str, Any]) -> None:
    global _WORKER_PIPELINE
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    _WORKER_PIPELINE = build_pipeline(overrides)


def _worker_bag(path: str, topics: Dict[str, str], name: str, kwargs: Dict[str, Any]
                ) -> Tuple[BagResult, str]:
    pipeline, _, backend, _ = _WORKER_PIPELINE
    return _evaluate_one(path, pipeline, topics, name, **kwargs), backend


def evaluate_bags(bags: Sequence[Any], pipeline: Any, topics: Dict[str, str], *,
                  min_iou: float = 0.3, classes: Sequence[str] = ("person",),
                  progress: bool = False, config: Optional[Dict[str, Any]] = None,
                  realtime: bool = False, workers: int = 1,
                  overrides: Optional[Dict[str, Any]] = None, table2: bool = True,
                  worst_frames: int = 6, output_bag_dir: Optional[Any] = None,
                  ray_address: Optional[str] = None) -> Dict[str, Any]:
    """Evaluate every bag (an unreadable one is reported and skipped) and return the report
    (the ``metrics.json`` document, see the module docstring). ``workers > 1``: bags in
    spawned worker processes, each building the node's pipeline from ``overrides``
    (``pipeline`` is then unused and may be None); ``ray_address``: the same on a Ray cluster
    (`hmr_ros.eval.ray_fanout`; ``"local"`` starts one on this machine). Ctrl-C returns what
    was computed, with ``"interrupted": true``."""
    names = _bag_names(bags)
    body_model = str((overrides or {}).get("body_model", "procedural"))
    kwargs = {"min_iou": min_iou, "classes": tuple(classes), "realtime": realtime,
              "table2": table2, "worst_frames": worst_frames, "body_model": body_model,
              "output_bag_dir": None if output_bag_dir is None else str(output_bag_dir)}
    results: List[Optional[BagResult]] = [None] * len(bags)
    interrupted = False
    config = dict(config or {})
    if ray_address:
        from hmr_ros.eval.ray_fanout import evaluate_on_ray

        results, backend, interrupted = evaluate_on_ray(
            ray_address, [str(b) for b in bags], names, dict(topics), kwargs,
            dict(overrides or {}), workers=workers if workers > 1 else 0, progress=progress)
        if backend is not None:
            config.setdefault("backend", backend)
    elif workers > 1 and len(bags) > 1:
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor, as_completed

        pool = ProcessPoolExecutor(max_workers=min(workers, len(bags)),
                                   mp_context=mp.get_context("spawn"),
                                   initializer=_worker_init, initargs=(dict(overrides or {}),))
        bar = None
        if progress:
            from tqdm import tqdm

            bar = tqdm(total=len(bags), desc="bags", unit="bag", leave=False)
        try:
            futures = {pool.submit(_worker_bag, str(path), dict(topics), name,
                                   {**kwargs, "progress": False}): i
                       for i, (path, name) in enumerate(zip(bags, names))}
            for fut in as_completed(futures):
                i = futures[fut]
                try:
                    results[i], backend = fut.result()
                    config.setdefault("backend", backend)
                except Exception as exc:  # noqa: BLE001 - e.g. a worker that died
                    results[i] = BagResult(str(bags[i]), names[i], status="skipped",
                                           reason=_skip_reason(exc))
                if bar is not None:
                    bar.update(1)
        except KeyboardInterrupt:
            interrupted = True
            log.warning("interrupted: writing the bags finished so far")
        finally:
            if bar is not None:
                bar.close()
            pool.shutdown(wait=not interrupted, cancel_futures=True)
    else:
        for i, (path, name) in enumerate(zip(bags, names)):
            try:
                results[i] = _evaluate_one(path, pipeline, topics, name, progress=progress,
                                           **kwargs)
            except EvalInterrupted as exc:
                results[i] = exc.result
                interrupted = True
                log.warning("interrupted: writing what was computed")
                break
            except KeyboardInterrupt:
                interrupted = True
                break
    results = [r if r is not None else
               BagResult(str(path), name, status="skipped", reason="not run: interrupted")
               for r, path, name in zip(results, bags, names)]
    report = merge_results(results, topics, min_iou=min_iou, config=config,
                           worst_frames=worst_frames)
    report["interrupted"] = interrupted
    report["config"].update({"realtime": bool(realtime), "workers": int(max(1, workers)),
                             "ray": ray_address or None})
    return report


def merge_results(results: Sequence[BagResult], topics: Dict[str, str], *,
                  min_iou: float = 0.3, config: Optional[Dict[str, Any]] = None,
                  worst_frames: int = 6) -> Dict[str, Any]:
    """The report of per-bag results, merged in the order given. The overlays of the worst
    frames ride along under the key ``"_images"`` ({relative path: JPEG bytes}), which
    `write_report` writes beside ``metrics.json`` and leaves out of it."""
    overall, occlusion = Accumulator(), _bins()
    per_sequence: Dict[str, Any] = OrderedDict()
    records, timings = [], {}
    frames, wall = 0, 0.0
    for res in results:
        records.append(res.record())
        if res.status == "skipped":
            continue
        per_sequence[res.name] = res.acc.summary()
        _merge(overall, res.acc)
        for k, acc in res.occlusion.items():
            _merge(occlusion[k], acc)
        for k, v in res.timings.items():
            timings.setdefault(k, []).extend(v)
        frames += res.frames
        wall += res.wall_s
    pipeline_s = float(sum(timings.get("total", [])))
    candidates = [w for res in results if res.status != "skipped" for w in res.worst]
    candidates.sort(key=lambda w: -w[0]["mpjpe_mm"])
    worst, images = [], {}
    for rank, (record, jpeg) in enumerate(candidates[:max(0, worst_frames)]):
        record = dict(record)
        if jpeg is not None:
            record["image"] = f"worst/{rank:02d}_{record['bag']}_{record['frame']:06d}.jpg"
            images[record["image"]] = jpeg
        worst.append(record)
    return {
        "schema_version": SCHEMA_VERSION,
        "tool": "hmr-ros eval",
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "interrupted": False,
        "config": {**(config or {}), "min_iou": min_iou, "topics": dict(topics),
                   "occlusion_bins": [list(b) for b in OCCLUSION_BINS],
                   "invisible_below": INVISIBLE_BELOW},
        "bags": records,
        "overall": overall.summary(),
        "per_sequence": per_sequence,
        "by_occlusion": {k: acc.summary(frames=False, predictions=False)
                         for k, acc in occlusion.items()},
        "table2": overall.table2_summary(),
        "worst_frames": worst,
        "latency_ms": _latency(timings),
        "throughput": {"frames": frames, "wall_s": wall,
                       "fps": frames / wall if wall > 0 else None, "pipeline_s": pipeline_s,
                       "pipeline_fps": frames / pipeline_s if pipeline_s > 0 else None},
        "_images": images,
    }


def _merge(into: Accumulator, acc: Accumulator) -> None:
    for k in ("frames", "gt_persons", "pred_persons", "matched", "misses", "false_positives"):
        setattr(into, k, getattr(into, k) + getattr(acc, k))
    for k in _ERRORS:
        into.errors[k].extend(acc.errors[k])
    into.vis_pred.extend(acc.vis_pred)
    into.vis_gt.extend(acc.vis_gt)
    for group, modes in acc.table2.items():
        for mode, errs in modes.items():
            slot = into.table2[group].setdefault(mode, {k: [] for k in _MESH_ERRORS})
            for k in _MESH_ERRORS:
                slot[k].extend(errs[k])


def _fmt(stat: Optional[Dict[str, Any]], digits: int = 1) -> str:
    if not stat or stat.get("mean") is None:
        return "-"
    return f"{stat['mean']:.{digits}f}"


def format_table(report: Dict[str, Any]) -> str:
    """The short table ``hmr-ros eval`` prints."""
    head = (f"{'group':<24} {'frames':>6} {'gt':>5} {'match':>5} {'miss':>5} {'fp':>5} "
            f"{'MPJPE':>7} {'PA-MPJPE':>8} {'PVE':>7} {'2D px':>6} {'vis acc':>7}")
    lines = [head, "-" * len(head)]

    def row(name: str, s: Dict[str, Any]) -> str:
        dash = lambda v: "-" if v is None else str(v)  # noqa: E731
        return (f"{name[:24]:<24} {dash(s['frames']):>6} {s['gt_persons']:>5} "
                f"{s['matched']:>5} {s['misses']:>5} {dash(s['false_positives']):>5} "
                f"{_fmt(s['mpjpe_mm']):>7} {_fmt(s['pa_mpjpe_mm']):>8} {_fmt(s['pve_mm']):>7} "
                f"{_fmt(s['kp2d_px']):>6} {_fmt(s['visibility_accuracy'], 3):>7}")

    lines.append(row("overall", report["overall"]))
    for name, s in report["per_sequence"].items():
        lines.append(row(f"  {name}", s))
    for name, s in report["by_occlusion"].items():
        lines.append(row(f"  occlusion {name}", s))
    for b in report["bags"]:
        if b["status"] != "ok":
            lines.append(f"{b['status']} {b['path']}: {b['reason']}")
        if b.get("frames_dropped"):
            lines.append(f"dropped {b['frames_dropped']} frames (--realtime): {b['path']}")
    t2 = report.get("table2")
    if t2:
        lines.append(f"paper table 2 (same stage outputs, before refinement; occluded: >= "
                     f"{t2['occluded_min_share']:.0%} of parts invisible) MPJPE / PA-MPJPE / "
                     "PVE, all | occluded:")
        for mode, rows in t2["modes"].items():
            cells = [" / ".join(_fmt(rows[g][k]) for k in _MESH_ERRORS)
                     for g in ("all", "occluded")]
            lines.append(f"  {mode:<11} {cells[0]:>22} | {cells[1]}")
    t = report["throughput"]
    lines.append(f"throughput: {t['frames']} frames in {t['wall_s']:.2f} s = "
                 f"{(t['fps'] or 0):.1f} frames/s (pipeline alone {(t['pipeline_fps'] or 0):.1f})")
    lat = report["latency_ms"]
    if lat:
        lines.append("latency ms (p50/p95/p99): " + ", ".join(
            f"{k} " + "/".join("n/a" if v.get(q) is None else f"{v[q]:.1f}"
                               for q in ("p50", "p95", "p99"))
            for k, v in lat.items()))
    lines.append("MPJPE/PA-MPJPE/PVE in mm (means over matched persons)")
    return "\n".join(lines)


# -- command line ---------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("bags", nargs="+", metavar="BAG",
                        help="rosbag2 folders / .mcap / .db3 files or ROS 1 .bag files")
    parser.add_argument("--report", required=True, metavar="DIR",
                        help="output folder (metrics.json)")
    for key, topic in DEFAULT_TOPICS.items():
        parser.add_argument(f"--{key.replace('_', '-')}-topic", dest=f"{key}_topic",
                            default=topic, help=f"default {topic}"
                            + ("; '' = none (people from person_detector)"
                               if key == "detections" else ""))
    parser.add_argument("--detection-classes", default="person",
                        help="comma-separated class ids taken from detections ('' = all)")
    parser.add_argument("--min-iou", type=float, default=0.3,
                        help="box IoU below which a prediction and a person do not match")
    parser.add_argument("-p", "--param", action="append", default=[], metavar="NAME:=VALUE",
                        help="a node parameter (model_dir, backend, merge_mode, "
                             "person_detector, ...), repeatable, as for hmr-ros node")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--html", action=argparse.BooleanOptionalAction, default=True,
                        help="also write DIR/report.html (default on; --no-html to skip)")
    parser.add_argument("--realtime", action="store_true",
                        help="feed frames at the recorded rate to one worker that takes the "
                             "newest frame, as the live node does; report the frames dropped")
    parser.add_argument("--workers", type=int, default=1, metavar="N",
                        help="evaluate N bags at a time in worker processes (default 1; with "
                             "--ray: Ray actors, default as many as the cluster's CPUs)")
    parser.add_argument("--ray", metavar="ADDRESS", default=None,
                        help="fan the bags out over a Ray cluster ('auto', 'HOST:6379', "
                             "'ray://HOST:10001'; 'local' starts one here). Every node must "
                             "see the bag paths (shared filesystem)")
    parser.add_argument("--table2", action=argparse.BooleanOptionalAction, default=True,
                        help="also score paper table 2's merge modes (visible-only, "
                             "global-only, KS-highest, KS-matched) on the same stage outputs "
                             "(VisHMR-family models; default on)")
    parser.add_argument("--worst", type=int, default=6, metavar="N",
                        help="keep the N frames with the highest MPJPE, with overlays, in "
                             "DIR/worst/ (default 6; 0 = none)")
    parser.add_argument("--output-bags", action="store_true",
                        help=f"write DIR/bags/NAME (MCAP): each bag's messages with the "
                             f"predictions beside them ({PREDICTION_TOPIC}, "
                             f"{PREDICTION_MARKERS}) for Foxglove")


def write_report(report: Dict[str, Any], out: Any, html: bool = True) -> List[Path]:
    """DIR/metrics.json (and DIR/report.html); returns the paths written."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    report = dict(report)
    images = report.pop("_images", None) or {}
    written = [out / "metrics.json"]
    for stale in (out / "worst").glob("*.jpg"):  # a previous run's overlays
        stale.unlink()
    for rel, jpeg in images.items():
        target = out / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(jpeg)
    written[0].write_text(json.dumps(report, indent=2, allow_nan=False) + "\n")
    if html:
        from hmr_ros.eval.report_html import write_html_report

        written.append(Path(write_html_report(report, out)))
    return written


def run(args: argparse.Namespace) -> int:
    from hmr_ros.node.cli import parse_overrides

    overrides = parse_overrides(args.param)
    workers = max(1, int(getattr(args, "workers", 1) or 1))
    ray_address = getattr(args, "ray", None)
    if ray_address or (workers > 1 and len(args.bags) > 1):
        pipeline, backend, config = None, None, node_config(overrides)
    else:
        pipeline, _, backend, config = build_pipeline(overrides)
    topics = {k: getattr(args, f"{k}_topic") for k in DEFAULT_TOPICS}
    classes = tuple(c.strip() for c in args.detection_classes.split(",") if c.strip())
    cfg = {"model_dir": config.model_dir, "merge_mode": config.merge_mode,
           "person_detector": config.person_detector}
    if backend is not None:
        cfg["backend"] = backend
    report = evaluate_bags(
        args.bags, pipeline, topics, min_iou=args.min_iou, classes=classes,
        progress=not args.no_progress, config=cfg,
        realtime=bool(getattr(args, "realtime", False)), workers=workers, overrides=overrides,
        table2=getattr(args, "table2", True), worst_frames=getattr(args, "worst", 6),
        output_bag_dir=(Path(args.report) / "bags") if getattr(args, "output_bags", False)
        else None, ray_address=ray_address)
    report["config"].setdefault("backend", None)
    written = write_report(report, args.report, html=getattr(args, "html", True))
    print(format_table(report))
    for path in written:
        print(f"wrote {path}")
    if report.get("interrupted"):
        print("interrupted: the report holds what was computed before Ctrl-C")
        return 130
    ok = [b for b in report["bags"] if b["status"] != "skipped"]
    return 0 if ok else 1
