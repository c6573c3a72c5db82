"""BlazePose's pre- and post-processing, vectorised and multi-person.

Every number here follows MediaPipe 0.10.14's graphs (``pose_detection_cpu.pbtxt``,
``pose_detection_to_roi.pbtxt``, ``pose_landmark_by_roi_cpu.pbtxt``,
``tensors_to_pose_landmarks_and_segmentation.pbtxt``, ``pose_landmarks_to_roi.pbtxt``), with one
deliberate change: the stock graph keeps only the best detection, this keeps every detection
that survives non-maximum suppression.

Coordinates: the detector works in the letterboxed 224 x 224 tensor, normalised to [0, 1];
everything returned to callers is in image pixels (the same convention as the affine warps
used for cropping: pixel centres at integer coordinates).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import List, Tuple

import numpy as np

DETECTOR_SIZE = 224
LANDMARK_SIZE = 256
HEATMAP_SIZE = 64
NUM_LANDMARKS = 39  # 33 pose landmarks, 2 auxiliary (ROI tracking), 4 unused
NUM_POSE_LANDMARKS = 33
ROI_SCALE = 1.25


def _ssd_anchor_centres() -> np.ndarray:
    """(2254, 2) anchor centres of the detector: strides 8, 16, 32, 32, 32, two anchors per
    cell and layer, layers with equal strides merged, fixed anchor size (so only centres
    matter), offset 0.5."""
    strides = [8, 16, 32, 32, 32]
    centres = []
    i = 0
    while i < len(strides):
        j = i
        while j < len(strides) and strides[j] == strides[i]:
            j += 1
        per_cell = 2 * (j - i)
        fm = math.ceil(DETECTOR_SIZE / strides[i])
        ys, xs = np.meshgrid((np.arange(fm) + 0.5) / fm, (np.arange(fm) + 0.5) / fm,
                             indexing="ij")
        cells = np.stack([xs.ravel(), ys.ravel()], axis=1)
        centres.append(np.repeat(cells, per_cell, axis=0))
        i = j
    return np.concatenate(centres).astype(np.float32)


ANCHORS = _ssd_anchor_centres()
assert len(ANCHORS) == 2254


def sigmoid(x: np.ndarray) -> np.ndarray:
    # clipped as MediaPipe clips scores (at 100); at 80 float32 exp cannot overflow
    return 1.0 / (1.0 + np.exp(-np.clip(x, -80.0, 80.0)))


# --- detector --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Letterbox:
    """How an image was fitted into the detector's square input: ``tensor = scale * image +
    offset`` (pixels of the 224 x 224 tensor)."""

    scale: float
    offset_x: float
    offset_y: float

    def matrix(self) -> np.ndarray:
        return np.array([[self.scale, 0.0, self.offset_x], [0.0, self.scale, self.offset_y]],
                        np.float32)


def letterbox(width: int, height: int) -> Letterbox:
    side = max(width, height)
    s = DETECTOR_SIZE / side
    return Letterbox(s, (side - width) / 2 * s, (side - height) / 2 * s)


@dataclass(frozen=True)
class Detection:
    """One person found by the detector, in image pixels."""

    score: float
    box: np.ndarray  # (4,) x0, y0, x1, y1 (the detector's box: head and shoulders)
    keypoints: np.ndarray  # (4, 2): mid-hip, full-body size/rotation, mid-shoulder, upper body


@dataclass(frozen=True)
class Candidates:
    """Detector outputs above the score threshold, in image pixels (before suppression)."""

    scores: np.ndarray  # (N,)
    boxes: np.ndarray  # (N, 4)
    keypoints: np.ndarray  # (N, 4, 2)

    @staticmethod
    def concatenate(parts: "List[Candidates]") -> "Candidates":
        if not parts:
            return Candidates(np.zeros(0, np.float32), np.zeros((0, 4), np.float32),
                              np.zeros((0, 4, 2), np.float32))
        return Candidates(np.concatenate([p.scores for p in parts]),
                          np.concatenate([p.boxes for p in parts]),
                          np.concatenate([p.keypoints for p in parts]))


def decode_candidates(raw_boxes: np.ndarray, raw_scores: np.ndarray, lb: Letterbox,
                      min_score: float = 0.5) -> Candidates:
    """Raw detector outputs of one input ((2254, 12), (2254,) or (2254, 1)) -> the anchors
    scoring at least ``min_score``, decoded (linear box sizes, keypoints relative to the
    anchor centre) and mapped back through ``lb`` to image pixels."""
    scores = sigmoid(np.asarray(raw_scores, np.float32).reshape(-1))
    keep = np.nonzero(scores >= min_score)[0]
    r = np.asarray(raw_boxes, np.float32)[keep] / DETECTOR_SIZE
    centres = ANCHORS[keep]
    cx, cy = r[:, 0] + centres[:, 0], r[:, 1] + centres[:, 1]
    w, h = r[:, 2], r[:, 3]
    boxes = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1)
    kps = r[:, 4:12].reshape(-1, 4, 2) + centres[:, None, :]
    valid = (w > 0) & (h > 0) & np.isfinite(boxes).all(axis=1) & np.isfinite(kps).all(axis=(1, 2))
    offset = np.array([lb.offset_x, lb.offset_y], np.float32)
    boxes_px = (boxes[valid] * DETECTOR_SIZE - np.tile(offset, 2)) / lb.scale
    kps_px = (kps[valid] * DETECTOR_SIZE - offset) / lb.scale
    return Candidates(scores[keep][valid], boxes_px.astype(np.float32), kps_px.astype(np.float32))


def weighted_nms(c: Candidates, iou_threshold: float = 0.3,
                 max_detections: int = 10) -> List[Detection]:
    """MediaPipe's WEIGHTED suppression: best first, every candidate overlapping the best by
    more than ``iou_threshold`` is merged into it (score-weighted mean of boxes and keypoints;
    the score stays the best one's)."""
    order = np.argsort(-c.scores, kind="stable")
    scores, boxes, kps = c.scores[order], c.boxes[order], c.keypoints[order]
    out: List[Detection] = []
    remaining = np.arange(len(scores))
    while remaining.size and len(out) < max_detections:
        top = remaining[0]
        overlap = _iou(boxes[top], boxes[remaining]) > iou_threshold
        overlap[0] = True
        members = remaining[overlap]
        weights = scores[members][:, None]
        box = (boxes[members] * weights).sum(0) / weights.sum()
        kp = (kps[members] * weights[:, :, None]).sum(0) / weights.sum()
        out.append(Detection(float(scores[top]), box.astype(np.float32), kp.astype(np.float32)))
        remaining = remaining[~overlap]
    return out


def decode_detections(raw_boxes: np.ndarray, raw_scores: np.ndarray, lb: Letterbox,
                      min_score: float = 0.5, iou_threshold: float = 0.3,
                      max_detections: int = 10) -> List[Detection]:
    """One detector input's raw outputs -> detections in image pixels, best first."""
    return weighted_nms(decode_candidates(raw_boxes, raw_scores, lb, min_score), iou_threshold,
                        max_detections)


def detector_views(width: int, height: int, tile: int = 0) -> List[Tuple[int, int, int]]:
    """Square views (x0, y0, side) the detector looks at: the whole (letterboxed) frame, and,
    with ``tile`` > 0, overlapping tiles of about ``tile`` pixels covering it -- the detector
    finds people down to about a sixth of its input's side, so far-away people need tiles."""
    views = [(0, 0, 0)]  # side 0: the whole frame, letterboxed
    if tile <= 0 or tile >= max(width, height):
        return views
    tile = min(tile, width, height)

    def starts(length: int) -> List[int]:
        n = max(1, int(np.ceil((length - tile) / (0.7 * tile))) + 1)
        return [int(round(v)) for v in np.linspace(0, length - tile, n)]

    views += [(x, y, tile) for y in starts(height) for x in starts(width)]
    return views


def view_input(image: np.ndarray, view: Tuple[int, int, int]) -> Tuple[np.ndarray, Letterbox]:
    """The detector's (3, 224, 224) input in [-1, 1] for one view of ``image``."""
    import cv2

    x0, y0, side = view
    if side == 0:
        h, w = image.shape[:2]
        lb = letterbox(w, h)
    else:
        s = DETECTOR_SIZE / side
        lb = Letterbox(s, -x0 * s, -y0 * s)
    x = cv2.warpAffine(image, lb.matrix(), (DETECTOR_SIZE, DETECTOR_SIZE),
                       flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    x = x.astype(np.float32) * (2.0 / 255.0) - 1.0
    return np.ascontiguousarray(x.transpose(2, 0, 1)), lb


def _iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    ix = np.clip(np.minimum(box[2], boxes[:, 2]) - np.maximum(box[0], boxes[:, 0]), 0, None)
    iy = np.clip(np.minimum(box[3], boxes[:, 3]) - np.maximum(box[1], boxes[:, 1]), 0, None)
    inter = ix * iy
    union = ((box[2] - box[0]) * (box[3] - box[1])
             + (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]) - inter)
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


# --- regions of interest ---------------------------------------------------------------------


@dataclass(frozen=True)
class Roi:
    """A rotated square region in image pixels: what the landmark model sees."""

    cx: float
    cy: float
    side: float
    rotation: float  # radians; the person's hip->head axis is turned upright

    def crop_matrix(self) -> np.ndarray:
        """2 x 3 map from landmark-tensor pixels (u, v) to image pixels."""
        c, s = math.cos(self.rotation), math.sin(self.rotation)
        k = self.side / LANDMARK_SIZE
        half = LANDMARK_SIZE / 2
        return np.array([[c * k, -s * k, self.cx - (c - s) * half * k],
                         [s * k, c * k, self.cy - (s + c) * half * k]], np.float32)

    def box(self) -> np.ndarray:
        """Axis-aligned bounds of the rotated square (x0, y0, x1, y1)."""
        c, s = abs(math.cos(self.rotation)), abs(math.sin(self.rotation))
        half = self.side * (c + s) / 2
        return np.array([self.cx - half, self.cy - half, self.cx + half, self.cy + half],
                        np.float32)


def roi_from_points(centre: np.ndarray, scale_point: np.ndarray) -> Roi:
    """MediaPipe's AlignmentPointsRects (target angle 90 degrees) then RectTransformation
    (x 1.25, square on the long side), in pixels."""
    dx, dy = float(scale_point[0] - centre[0]), float(scale_point[1] - centre[1])
    side = 2.0 * math.hypot(dx, dy) * ROI_SCALE
    rotation = math.pi / 2 - math.atan2(-dy, dx)
    rotation -= 2 * math.pi * math.floor((rotation + math.pi) / (2 * math.pi))
    return Roi(float(centre[0]), float(centre[1]), side, rotation)


def roi_from_detection(det: Detection) -> Roi:
    return roi_from_points(det.keypoints[0], det.keypoints[1])


def roi_from_box(box: np.ndarray) -> Roi:
    """An upright square around a person box (for boxes from a ``detections`` topic)."""
    x0, y0, x1, y1 = (float(v) for v in box)
    return Roi((x0 + x1) / 2, (y0 + y1) / 2, max(x1 - x0, y1 - y0) * ROI_SCALE, 0.0)


# --- landmarks -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Landmarks:
    """Decoded landmark-model output of one person, in image pixels."""

    points: np.ndarray  # (39, 3): x, y pixels; z (same scale as x, relative to the hips)
    visibility: np.ndarray  # (39,) probability the point is visible
    presence: np.ndarray  # (39,) probability the point is in the image
    world: np.ndarray  # (39, 3) metres, hip-centred, rotated into the image's axes
    pose_score: float  # probability a person is in the ROI
    roi: Roi

    def next_roi(self) -> Roi:
        """The region to look at next frame, from the auxiliary landmarks (33: centre,
        34: size and rotation), as MediaPipe's tracking does."""
        return roi_from_points(self.points[33, :2], self.points[34, :2])


def refine_from_heatmap(xy: np.ndarray, heatmap: np.ndarray, kernel: int = 7,
                        min_confidence: float = 0.5) -> np.ndarray:
    """MediaPipe's RefineLandmarksFromHeatmap: the confidence-weighted mean of the heatmap
    cells in a ``kernel`` window around each landmark (tensor-normalised ``xy`` (39, 2),
    ``heatmap`` (39, 64, 64) logits)."""
    out = xy.copy()
    size = heatmap.shape[-1]
    half = kernel // 2
    for j in range(xy.shape[0]):
        if not np.isfinite(xy[j]).all():
            continue
        col, row = int(xy[j, 0] * size), int(xy[j, 1] * size)
        if not (0 <= col < size and 0 <= row < size):
            continue
        r0, r1 = max(0, row - half), min(size, row + half + 1)
        c0, c1 = max(0, col - half), min(size, col + half + 1)
        conf = sigmoid(heatmap[j, r0:r1, c0:c1])
        total = conf.sum()
        if conf.max() >= min_confidence and total > 0:
            rows, cols = np.mgrid[r0:r1, c0:c1]
            out[j, 0] = (cols * conf).sum() / total / size
            out[j, 1] = (rows * conf).sum() / total / size
    return out


def decode_landmarks(raw: np.ndarray, pose_flag: float, heatmap: np.ndarray, world: np.ndarray,
                     roi: Roi) -> Landmarks:
    """One person's landmark-model outputs ((195,), scalar, (39, 64, 64), (117,)) -> image
    pixels, projected back through the ROI's rotation."""
    lm = np.asarray(raw, np.float32).reshape(NUM_LANDMARKS, 5)
    xy = lm[:, :2] / LANDMARK_SIZE
    xy = refine_from_heatmap(xy, np.asarray(heatmap, np.float32))
    c, s = math.cos(roi.rotation), math.sin(roi.rotation)
    px, py = xy[:, 0] - 0.5, xy[:, 1] - 0.5
    x = (c * px - s * py) * roi.side + roi.cx
    y = (s * px + c * py) * roi.side + roi.cy
    z = lm[:, 2] / LANDMARK_SIZE * roi.side
    w = np.asarray(world, np.float32).reshape(NUM_LANDMARKS, 3)
    world_rot = np.stack([c * w[:, 0] - s * w[:, 1], s * w[:, 0] + c * w[:, 1], w[:, 2]], axis=1)
    return Landmarks(points=np.stack([x, y, z], axis=1).astype(np.float32),
                     visibility=sigmoid(lm[:, 3]).astype(np.float32),
                     presence=sigmoid(lm[:, 4]).astype(np.float32),
                     world=world_rot.astype(np.float32), pose_score=float(pose_flag), roi=roi)


def person_box(points: np.ndarray, width: int, height: int) -> np.ndarray:
    """A person box from the 33 pose landmarks: their extent, plus the top of the head (the
    highest landmarks are the eyes; the crown is about two nose-to-mouth distances beyond
    them along the body's hips-to-shoulders axis, whichever way the person is turned),
    clipped to the image. (x0, y0, x1, y1) pixels."""
    p = points[:NUM_POSE_LANDMARKS, :2]
    if np.isfinite(p).all():
        head = float(np.linalg.norm(p[0] - (p[9] + p[10]) / 2))
        up = (p[11] + p[12]) / 2 - (p[23] + p[24]) / 2
        norm = float(np.linalg.norm(up))
        if norm > 1e-6:
            eyes = (p[2] + p[5]) / 2
            p = np.concatenate([p, (eyes + up / norm * 2.0 * head)[None]])
    p = p[np.isfinite(p).all(axis=1)]
    if not len(p):
        return np.zeros(4, np.float32)
    x0, y0 = p.min(0)
    x1, y1 = p.max(0)
    pad = 0.03 * max(x1 - x0, y1 - y0)
    box = np.array([x0 - pad, y0 - pad, x1 + pad, y1 + pad], np.float32)
    return np.clip(box, 0, [width - 1, height - 1, width - 1, height - 1]).astype(np.float32)


def box_iou(a: np.ndarray, b: np.ndarray) -> float:
    return float(_iou(np.asarray(a, np.float64), np.asarray(b, np.float64)[None])[0])


def letterbox_input(image: np.ndarray) -> Tuple[np.ndarray, Letterbox]:
    """RGB uint8 image -> the detector's (3, 224, 224) input in [-1, 1] for the whole frame
    (letterboxed, zero border: -1 after normalisation), and the letterbox used."""
    return view_input(image, (0, 0, 0))


def roi_input(image: np.ndarray, roi: Roi) -> np.ndarray:
    """RGB uint8 image -> the landmark model's (3, 256, 256) float input in [0, 1] for ``roi``
    (bilinear, edges replicated, as MediaPipe's ImageToTensor)."""
    import cv2

    x = cv2.warpAffine(image, roi.crop_matrix(), (LANDMARK_SIZE, LANDMARK_SIZE),
                       flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                       borderMode=cv2.BORDER_REPLICATE)
    return np.ascontiguousarray(x.transpose(2, 0, 1), dtype=np.float32) * (1.0 / 255.0)
