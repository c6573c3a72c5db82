"""Augmentation of real-image samples, done *inside* the crop warp (no border loss).

``AugmentConfig`` holds the knobs (the ``augment:`` section of a training config);
``sample_params`` draws one sample's ``AugmentParams`` from a NumPy ``Generator``;
``crop_sample`` warps the image with them and moves every label consistently (see
``geometry.py`` for the conventions); ``photometric`` applies colour jitter and pastes synthetic
occluders on the crop.

Occluders pasted on a real image do not change its labels (real datasets carry no visibility
GT), so they teach robustness to occlusion, not visibility. Samples carrying IUV / visibility
(synthetic renders) get photometric jitter only: a geometric change would invalidate their IUV
(the atlas charts of left and right parts are not mirror images of each other) -- the generator
varies pose, framing and occlusion itself.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Dict, Optional, Tuple

import numpy as np

from . import geometry as geo

__all__ = ["AugmentConfig", "AugmentParams", "IDENTITY", "crop_sample", "photometric",
           "sample_params"]


@dataclass(frozen=True)
class AugmentConfig:
    """Augmentation knobs; ``AugmentConfig(enabled=False)`` (or ``augment=None``) = none."""

    enabled: bool = True
    scale: float = 0.25  #: box side × U[1 - scale, 1 + scale]
    shift: float = 0.05  #: box centre moved by U[-shift, shift] × box side, per axis
    rotation: float = 30.0  #: degrees: U[-rotation, rotation] ...
    rotation_prob: float = 0.6  #: ... with this probability (else 0)
    flip_prob: float = 0.5  #: horizontal flip with left/right swap of joints and parts
    color_jitter: float = 0.2  #: per-channel gain × U[1 - c, 1 + c]
    occluder_prob: float = 0.5  #: probability of pasting occluders on a real image
    occluder_max_count: int = 3  #: 1..max occluders when pasting
    occluder_size: Tuple[float, float] = (0.1, 0.4)  #: side range, fraction of the crop

    def __post_init__(self) -> None:
        for name in ("rotation_prob", "flip_prob", "occluder_prob"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"augment.{name} must be a probability in [0, 1], got {value}")
        for name in ("scale", "shift", "color_jitter"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"augment.{name} must be in [0, 1), got {getattr(self, name)}")
        if self.rotation < 0:
            raise ValueError(f"augment.rotation must be >= 0 degrees, got {self.rotation}")
        if self.occluder_max_count < 1:
            raise ValueError(f"augment.occluder_max_count must be >= 1, got "
                             f"{self.occluder_max_count}")
        lo, hi = self.occluder_size
        if not 0 < lo <= hi <= 1:
            raise ValueError(f"augment.occluder_size must be (low, high) with 0 < low <= high "
                             f"<= 1, got {self.occluder_size}")
        object.__setattr__(self, "occluder_size", (float(lo), float(hi)))

    def to_dict(self) -> dict:
        d = asdict(self)
        d["occluder_size"] = list(self.occluder_size)
        return d


@dataclass(frozen=True)
class AugmentParams:
    """One sample's draw: geometry (applied in the warp) and photometry (on the crop)."""

    scale: float = 1.0
    shift: Tuple[float, float] = (0.0, 0.0)
    rotation: float = 0.0  #: degrees
    flip: bool = False
    gains: Tuple[float, float, float] = (1.0, 1.0, 1.0)
    occluders: int = 0
    seed: int = 0  #: for the occluders' shapes and textures
    extra: Dict[str, float] = field(default_factory=dict)


IDENTITY = AugmentParams()


def sample_params(cfg: Optional[AugmentConfig], rng: np.random.Generator) -> AugmentParams:
    """Draw one sample's parameters (identity when ``cfg`` is None or disabled)."""
    if cfg is None or not cfg.enabled:
        return IDENTITY
    u = rng.uniform
    rot = float(u(-cfg.rotation, cfg.rotation)) if u() < cfg.rotation_prob else 0.0
    count = int(rng.integers(1, cfg.occluder_max_count + 1)) if u() < cfg.occluder_prob else 0
    return AugmentParams(
        scale=float(u(1 - cfg.scale, 1 + cfg.scale)),
        shift=(float(u(-cfg.shift, cfg.shift)), float(u(-cfg.shift, cfg.shift))),
        rotation=rot,
        flip=bool(u() < cfg.flip_prob),
        gains=tuple(float(g) for g in u(1 - cfg.color_jitter, 1 + cfg.color_jitter, 3)),
        occluders=count,
        seed=int(rng.integers(0, 2**31 - 1)),
    )


def photometric(crop: np.ndarray, params: AugmentParams, cfg: Optional[AugmentConfig],
                occluders: bool = True) -> np.ndarray:
    """Colour gains, then (``occluders``) ``params.occluders`` random occluders: L x L x 3 uint8."""
    out = crop.astype(np.float32) * np.asarray(params.gains, np.float32)
    if occluders and params.occluders and cfg is not None:
        out = _paste_occluders(out, params.occluders, cfg.occluder_size,
                               np.random.default_rng(params.seed))
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def _paste_occluders(img: np.ndarray, count: int, size_range: Tuple[float, float],
                     rng: np.random.Generator) -> np.ndarray:
    """Rectangles or elliptical blobs with a random colour plus a noise texture."""
    h, w = img.shape[:2]
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    for _ in range(count):
        sw, sh = (rng.uniform(*size_range, 2) * np.array([w, h])).astype(np.float32)
        cx, cy = rng.uniform(0, w), rng.uniform(0, h)
        if rng.uniform() < 0.5:
            mask = (np.abs(xx - cx) <= sw / 2) & (np.abs(yy - cy) <= sh / 2)
        else:  # a rotated ellipse with a wobbly rim: a blob
            ang = rng.uniform(0, np.pi)
            dx, dy = xx - cx, yy - cy
            rx = (dx * np.cos(ang) + dy * np.sin(ang)) / (sw / 2)
            ry = (-dx * np.sin(ang) + dy * np.cos(ang)) / (sh / 2)
            theta = np.arctan2(ry, rx)
            rim = 1 + 0.2 * np.sin(3 * theta + rng.uniform(0, 2 * np.pi))
            mask = rx ** 2 + ry ** 2 <= rim ** 2
        colour = rng.uniform(0, 255, 3).astype(np.float32)
        noise = rng.normal(0, rng.uniform(5, 40), (h, w, 1)).astype(np.float32)
        img = np.where(mask[..., None], colour + noise, img)
    return img


def crop_sample(image: np.ndarray, center, box_size: float, crop_size: int,
                params: AugmentParams = IDENTITY, cfg: Optional[AugmentConfig] = None,
                rel_rotmats: Optional[np.ndarray] = None,
                keypoints_px: Optional[np.ndarray] = None,
                keypoints_conf: Optional[np.ndarray] = None,
                joints3d: Optional[np.ndarray] = None,
                joints3d_conf: Optional[np.ndarray] = None) -> Dict[str, np.ndarray]:
    """Crop one person from a full image with ``params`` and move the labels along.

    image: H x W x 3 uint8 RGB; center: (x, y) pixels; box_size: side in pixels; rel_rotmats
    24 x 3 x 3 (camera-frame root); keypoints_px 24 x 2 image pixels (+ conf 24); joints3d
    24 x 3 camera frame (+ conf 24). Returns NumPy arrays: ``crop`` L x L x 3 uint8 and the
    given labels, with ``keypoints2d`` crop-normalised, rotated, flipped and permuted.
    """
    box = float(box_size) * params.scale
    c = np.asarray(center, np.float64).reshape(2) + box * np.asarray(params.shift)
    matrix = geo.crop_matrix(c, box, crop_size, params.rotation, params.flip)
    crop = geo.warp_crop(image, matrix, crop_size)
    if params is not IDENTITY:
        crop = photometric(crop, params, cfg)
    out: Dict[str, np.ndarray] = {"crop": crop, "crop_matrix": matrix}
    flip = params.flip
    if rel_rotmats is not None:
        r = geo.rotate_root(rel_rotmats, params.rotation)
        out["rel_rotmats"] = geo.flip_rotmats(r) if flip else r
    if keypoints_px is not None:
        # the warp already mirrored x: only the left/right swap is left to do
        k = geo.to_crop_normalised(keypoints_px, c, box, params.rotation, flip)
        out["keypoints2d"] = geo.flip_per_part(k.T).T if flip else k
        conf = np.ones(len(k)) if keypoints_conf is None else np.asarray(keypoints_conf, float)
        out["keypoints2d_conf"] = geo.flip_per_part(conf) if flip else conf
    if joints3d is not None:
        j = geo.rotate_points3d(joints3d, params.rotation)
        out["joints3d"] = geo.flip_joints3d(j) if flip else j
        conf = np.ones(len(j)) if joints3d_conf is None else np.asarray(joints3d_conf, float)
        out["joints3d_conf"] = geo.flip_per_part(conf) if flip else conf
    return out
