"""Detector-like COCO-17 keypoints from clean ones: the input a keypoint-conditioned regressor
sees at run time is a 2D detector's output, not the ground truth.

``simulate_detections(keypoints, states, box_size, rng, params)`` turns clean keypoints (pixels)
and their visibility states (``coco17``: 0 outside the image, 1 occluded, 2 visible) into
detections with a confidence per point, in this order:

1. **Swaps** (the labelling mistakes of real detectors): with ``p_mirror`` the whole body is
   mirrored (every left point takes its right partner's place, ``COCO17_FLIP``: a person seen
   from behind read as from the front); otherwise, with ``p_swap_arms`` / ``p_swap_legs``,
   the whole left and right arm (shoulder, elbow, wrist) or leg (hip, knee, ankle) change
   places. Each point keeps the state of the place it moved to.
2. **Jitter**: Gaussian, standard deviation ``sigma x box_size x sigma_scale[k]`` per axis
   (``sigma_scale`` is larger on wrists and ankles), times ``occluded_sigma`` for occluded
   points and ``outside_sigma`` for points outside the image; with ``p_outlier`` a point gets
   the wide error ``outlier_sigma x box_size`` instead (heavy tails).
3. **Dropouts**: with ``p_drop`` (visible), ``p_drop_occluded``, ``p_drop_outside`` a point is
   lost: its position is uniform in the person box grown by ``drop_box_margin`` and its
   confidence is drawn from ``conf_dropped``.
4. **Confidence** per point: Beta(a, b) by state (``conf_visible``, ``conf_occluded``,
   ``conf_outside``), lowered by ``outlier_conf_factor`` for outliers; nose and eyes take
   ``conf_face_hidden`` when the face is turned away (``face_front < face_hidden_below``, or
   without ``face_front`` when all three are not visible).

``box_size`` is the person's box size in pixels (``max(width, height)`` of ``people_bbox``);
every distance scales with it, so the model does not depend on the crop size. Everything is
drawn from the given ``numpy.random.Generator``: same generator state, same detections. The
defaults are guesses, to be calibrated against the real detector (BlazePose through
``hmr_ros.body.keypoints.coco17_from_blazepose33``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Dict, Optional, Tuple, Union

import numpy as np

from hmr_ros.body.keypoints import COCO17_FACE, COCO17_FLIP, NUM_COCO17

__all__ = ["KeypointNoiseParams", "simulate_detections", "noisy_coco17", "ARM_PAIRS",
           "LEG_PAIRS"]

#: (left, right) COCO-17 indices of the arm and leg chains that swap as a whole
ARM_PAIRS = ((5, 6), (7, 8), (9, 10))
LEG_PAIRS = ((11, 12), (13, 14), (15, 16))

#: per-keypoint jitter multipliers: face, shoulders, elbows, wrists, hips, knees, ankles
_SIGMA_SCALE = (0.6, 0.6, 0.6, 0.8, 0.8, 0.8, 0.8, 1.0, 1.0, 1.5, 1.5, 1.1, 1.1, 1.0, 1.0,
                1.4, 1.4)


@dataclass(frozen=True)
class KeypointNoiseParams:
    """Rates and scales of ``simulate_detections`` (module docs); lengths are fractions of the
    person's box size, Beta parameters are (a, b)."""

    sigma: float = 0.012
    sigma_scale: Tuple[float, ...] = _SIGMA_SCALE
    occluded_sigma: float = 3.0
    outside_sigma: float = 4.0
    p_outlier: float = 0.02
    outlier_sigma: float = 0.12
    outlier_conf_factor: float = 0.6
    p_drop: float = 0.02
    p_drop_occluded: float = 0.25
    p_drop_outside: float = 0.5
    drop_box_margin: float = 0.1
    p_swap_arms: float = 0.02
    p_swap_legs: float = 0.03
    p_mirror: float = 0.01
    conf_visible: Tuple[float, float] = (8.0, 1.6)
    conf_occluded: Tuple[float, float] = (2.5, 3.0)
    conf_outside: Tuple[float, float] = (1.0, 8.0)
    conf_dropped: Tuple[float, float] = (1.0, 7.0)
    conf_face_hidden: Tuple[float, float] = (1.2, 6.0)
    face_hidden_below: float = 0.0

    def __post_init__(self) -> None:
        if len(self.sigma_scale) != NUM_COCO17:
            raise ValueError(f"sigma_scale needs {NUM_COCO17} values, got "
                             f"{len(self.sigma_scale)}")
        for f in fields(self):
            if f.name.startswith("p_"):
                v = getattr(self, f.name)
                if not 0.0 <= v <= 1.0:
                    raise ValueError(f"{f.name} must be a probability, got {v}")
            if f.name.startswith("conf_"):
                a, b = getattr(self, f.name)
                if not (a > 0 and b > 0):
                    raise ValueError(f"{f.name} must be Beta (a, b) > 0, got {(a, b)}")

    def to_dict(self) -> dict:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict) -> "KeypointNoiseParams":
        names = {f.name for f in fields(cls)}
        unknown = set(data) - names
        if unknown:
            raise ValueError(f"unknown KeypointNoiseParams fields: {sorted(unknown)}")
        return cls(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in data.items()})


def _swap_pairs(x: np.ndarray, mask: np.ndarray, pairs) -> None:
    for a, b in pairs:
        xa = x[mask, a].copy()
        x[mask, a] = x[mask, b]
        x[mask, b] = xa


def simulate_detections(keypoints: np.ndarray, states: np.ndarray,
                        box_size: Union[float, np.ndarray], rng: np.random.Generator,
                        params: Optional[KeypointNoiseParams] = None,
                        face_front: Optional[np.ndarray] = None,
                        box: Optional[np.ndarray] = None, image_size: Optional[float] = None,
                        return_info: bool = False):
    """Detections (module docs) of clean keypoints.

    keypoints: (..., 17, 2) pixels; states: (..., 17) int 0/1/2 (or bool: True = visible,
    False = occluded); box_size: (...) or scalar, pixels; face_front: (...) cosines or None;
    box: (..., 4) x0, y0, x1, y1 where dropped points land (default: the keypoints' own
    extent); image_size: clip positions into [0, image_size] (a detector on the crop) or None.

    Returns (keypoints (..., 17, 2) float32, confidence (..., 17) float32) and, with
    ``return_info``, a dict of boolean masks: ``mirrored`` (...), ``arms_swapped``,
    ``legs_swapped`` (...), ``dropped``, ``outlier`` (..., 17).
    """
    p = params or KeypointNoiseParams()
    kp = np.asarray(keypoints, np.float64)
    st = np.asarray(states)
    if st.dtype == bool:
        st = np.where(st, 2, 1)
    st = st.astype(np.int64)
    if kp.shape[-2:] != (NUM_COCO17, 2) or st.shape != kp.shape[:-1]:
        raise ValueError(f"keypoints must be (..., 17, 2) and states (..., 17), got "
                         f"{kp.shape} and {st.shape}")
    batch = kp.shape[:-2]
    n = int(np.prod(batch)) if batch else 1
    kp = kp.reshape(n, NUM_COCO17, 2).copy()
    st = st.reshape(n, NUM_COCO17).copy()
    size = np.broadcast_to(np.asarray(box_size, np.float64), batch).reshape(n)
    # 1. swaps
    mirrored = rng.random(n) < p.p_mirror
    arms = ~mirrored & (rng.random(n) < p.p_swap_arms)
    legs = ~mirrored & (rng.random(n) < p.p_swap_legs)
    kp[mirrored] = kp[mirrored][:, COCO17_FLIP]
    st[mirrored] = st[mirrored][:, COCO17_FLIP]
    for mask, pairs in ((arms, ARM_PAIRS), (legs, LEG_PAIRS)):
        _swap_pairs(kp, mask, pairs)
        _swap_pairs(st, mask, pairs)
    visible, occluded, outside = st == 2, st == 1, st == 0
    # 2. jitter
    sd = p.sigma * size[:, None] * np.asarray(p.sigma_scale)[None]
    sd = sd * np.where(occluded, p.occluded_sigma, np.where(outside, p.outside_sigma, 1.0))
    outlier = rng.random((n, NUM_COCO17)) < p.p_outlier
    sd = np.where(outlier, p.outlier_sigma * size[:, None], sd)
    out = kp + rng.standard_normal((n, NUM_COCO17, 2)) * sd[..., None]
    # 3. dropouts: anywhere in the (grown) person box
    p_drop = np.where(visible, p.p_drop, np.where(occluded, p.p_drop_occluded, p.p_drop_outside))
    dropped = rng.random((n, NUM_COCO17)) < p_drop
    if box is not None:
        bx = np.asarray(box, np.float64).reshape(n, 4)
        lo, hi = bx[:, :2], bx[:, 2:]
    else:
        lo, hi = kp.min(axis=1), kp.max(axis=1)
    grow = p.drop_box_margin * (hi - lo)
    lo, hi = lo - grow, hi + grow
    anywhere = lo[:, None] + rng.random((n, NUM_COCO17, 2)) * (hi - lo)[:, None]
    out = np.where(dropped[..., None], anywhere, out)
    # 4. confidence
    conf = np.where(visible, rng.beta(*p.conf_visible, (n, NUM_COCO17)),
                    np.where(occluded, rng.beta(*p.conf_occluded, (n, NUM_COCO17)),
                             rng.beta(*p.conf_outside, (n, NUM_COCO17))))
    conf = np.where(outlier, conf * p.outlier_conf_factor, conf)
    if face_front is not None:
        hidden = np.broadcast_to(np.asarray(face_front, np.float64), batch).reshape(n) < \
            p.face_hidden_below
    else:
        hidden = ~np.any(visible[:, COCO17_FACE], axis=1)
    face_conf = rng.beta(*p.conf_face_hidden, (n, len(COCO17_FACE)))
    conf[:, COCO17_FACE] = np.where(hidden[:, None], np.minimum(conf[:, COCO17_FACE], face_conf),
                                    conf[:, COCO17_FACE])
    conf = np.where(dropped, rng.beta(*p.conf_dropped, (n, NUM_COCO17)), conf)
    if image_size is not None:
        out = np.clip(out, 0.0, float(image_size))
    out = out.reshape(batch + (NUM_COCO17, 2)).astype(np.float32)
    conf = conf.reshape(batch + (NUM_COCO17,)).astype(np.float32)
    if not return_info:
        return out, conf
    info = {"mirrored": mirrored.reshape(batch), "arms_swapped": arms.reshape(batch),
            "legs_swapped": legs.reshape(batch),
            "dropped": dropped.reshape(batch + (NUM_COCO17,)),
            "outlier": outlier.reshape(batch + (NUM_COCO17,))}
    return out, conf, info


def noisy_coco17(sample: Dict[str, np.ndarray], rng: np.random.Generator,
                 params: Optional[KeypointNoiseParams] = None,
                 person: int = 0) -> Dict[str, np.ndarray]:
    """Detections of one person of a generator / ``SyntheticShards`` sample (NumPy arrays):
    ``coco17_det`` 17 x 2 pixels, ``coco17_det_norm`` 17 x 2 crop-normalised [-1, 1],
    ``coco17_conf`` 17 (a detector on the crop: positions clipped to the image)."""
    size = float(np.asarray(sample["image"]).shape[0])
    box = np.asarray(sample["people_bbox"], np.float64)[person]
    box_size = float(max(box[2] - box[0], box[3] - box[1]))
    det, conf = simulate_detections(
        np.asarray(sample["people_coco17"])[person],
        np.asarray(sample["people_coco17_vis"])[person], box_size, rng, params,
        face_front=np.asarray(sample["people_face_front"])[person], box=box, image_size=size)
    return {"coco17_det": det, "coco17_det_norm": ((det - 0.5 * size) / (0.5 * size)).astype(
        np.float32), "coco17_conf": conf}
