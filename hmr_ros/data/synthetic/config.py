"""``SynthConfig``: every knob of the synthetic generator in one frozen, JSON-able record.

A dataset is defined by ``(SynthConfig, seed)``: ``dataset.json`` stores ``to_dict()`` and
``SynthConfig.from_dict`` rebuilds the exact generator, so a shard directory documents itself.
Probabilities are per image; ranges are ``(low, high)`` sampled uniformly.

The *realism* knobs (head features, photographs, low resolution, motion blur, JPEG) came later
(format ``hmr_ros.synthetic/2``): a ``dataset.json`` written before them rebuilds its generator
with ``from_dict(..., missing="legacy")``, which fills them with ``LEGACY`` (all off), and the
generator then draws exactly the samples it drew then (the realism draws use their own
generator, seeded after every older draw).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Tuple

__all__ = ["SynthConfig", "MAX_PEOPLE", "LEGACY", "PHOTOS_AUTO", "PHOTOS_NONE"]

#: the main person plus at most 3 others; per-person arrays are padded to this many rows
MAX_PEOPLE = 4

PHOTOS_AUTO, PHOTOS_NONE = "auto", "none"


@dataclass(frozen=True)
class SynthConfig:
    """Scene, camera and appearance distribution of the synthetic images."""

    size: int = 224  #: square image side in pixels (the image *is* the person crop)
    # people
    p_multi: float = 0.3  #: probability of 1-3 other people near the main one
    beta_clip: float = 2.5  #: betas ~ N(0, 1) clipped to [-beta_clip, beta_clip]
    p_preset: float = 0.7  #: pose = preset (+ noise) with this probability, else random in limits
    max_pitch_deg: float = 12.0  #: |pitch| (lean towards / away from the camera) bound
    max_roll_deg: float = 8.0  #: |roll| (sideways tilt) bound
    # camera and framing
    fov_deg: Tuple[float, float] = (40.0, 70.0)  #: vertical field of view of the crop
    principal_jitter: float = 0.03  #: principal point offset, fraction of the size
    fill: Tuple[float, float] = (0.5, 0.9)  #: person bbox's larger side / image side
    centre_jitter: float = 0.05  #: bbox centre offset from the image centre, fraction of size
    p_truncate: float = 0.15  #: probability of shifting the person partly out of the image
    truncate: Tuple[float, float] = (0.1, 0.3)  #: fraction of the bbox pushed outside
    # occluders
    p_occ: float = 0.6  #: probability of 1-3 occluders between camera and main person
    max_occluders: int = 3
    occluder_size: Tuple[float, float] = (0.15, 0.5)  #: projected size / person bbox height
    # appearance
    noise_sigma: Tuple[float, float] = (0.0, 4.0)  #: Gaussian pixel noise, 8-bit levels
    p_blur: float = 0.5  #: probability of a mild 3x3 blur (softens aliased edges)
    # ground truth
    atlas_size: int = 64  #: atlas side S for the visibility of eq. 1
    #: eq. 1 is evaluated on an IUV rendered at this side (0 = the image size), so visibility
    #: does not depend on the crop size (see ``render.render_scene``)
    visibility_size: int = 224
    # realism (photos need a photo folder: ``python -m hmr_ros.data.synthetic.photos fetch``)
    head_features: bool = True  #: painted face (eyes, brows, mouth) on the front, hair behind
    #: photo folder: "auto" = $HMR_ROS_PHOTOS or ~/.cache/hmr_ros/photos when it holds photos,
    #: "none" = procedural looks only, or a directory
    photos: str = PHOTOS_AUTO
    p_photo_background: float = 0.8  #: a random crop of a photo as the background
    p_photo_clothing: float = 0.3  #: per garment (top, bottom): a photo patch as its print
    p_photo_occluder: float = 0.4  #: per occluder: a photo patch as its texture
    #: probability of seeing the main person through a lower-resolution camera: its height in
    #: the source image is drawn log-uniformly in ``person_px`` (pixels, at any crop size) and
    #: the crop is rendered, shrunk to that scale, noised, JPEG'd and scaled back up
    p_lowres: float = 0.5
    person_px: Tuple[float, float] = (60.0, 240.0)
    p_motion_blur: float = 0.25  #: a random straight motion-blur kernel
    motion_blur: Tuple[float, float] = (0.01, 0.05)  #: kernel length / crop side
    p_jpeg: float = 0.8  #: JPEG re-encoding (at the source resolution)
    jpeg_quality: Tuple[float, float] = (30.0, 95.0)

    def __post_init__(self) -> None:
        if not 16 <= int(self.size) <= 2048:
            raise ValueError(f"size must be in [16, 2048], got {self.size}")
        for name in ("p_multi", "p_preset", "p_truncate", "p_occ", "p_blur", "p_photo_background",
                     "p_photo_clothing", "p_photo_occluder", "p_lowres", "p_motion_blur",
                     "p_jpeg"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be a probability in [0, 1], got {value}")
        for name in ("fov_deg", "fill", "truncate", "occluder_size", "noise_sigma", "person_px",
                     "motion_blur", "jpeg_quality"):
            low, high = getattr(self, name)
            if not low <= high:
                raise ValueError(f"{name} must be (low, high) with low <= high, got {(low, high)}")
        if not (0 < self.fov_deg[0] and self.fov_deg[1] < 170):
            raise ValueError(f"fov_deg must lie in (0, 170), got {self.fov_deg}")
        if not (0 < self.fill[0] and self.fill[1] <= 2):
            raise ValueError(f"fill must lie in (0, 2], got {self.fill}")
        if self.visibility_size != 0 and not 16 <= self.visibility_size <= 2048:
            raise ValueError(f"visibility_size must be 0 or in [16, 2048], got "
                             f"{self.visibility_size}")
        if not self.person_px[0] >= 8:
            raise ValueError(f"person_px must be >= 8 pixels, got {self.person_px}")
        if not (0 <= self.motion_blur[0] and self.motion_blur[1] <= 0.5):
            raise ValueError(f"motion_blur must lie in [0, 0.5], got {self.motion_blur}")
        if not (1 <= self.jpeg_quality[0] and self.jpeg_quality[1] <= 100):
            raise ValueError(f"jpeg_quality must lie in [1, 100], got {self.jpeg_quality}")
        if not isinstance(self.photos, str) or not self.photos:
            raise ValueError(f"photos must be 'auto', 'none' or a directory, got {self.photos!r}")
        if self.atlas_size < 32:
            raise ValueError(f"atlas_size must be >= 32 (charts overlap below), got "
                             f"{self.atlas_size}")

    def to_dict(self) -> dict:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(self).items()}

    @property
    def realism(self) -> bool:
        """Whether any realism option is on (the generator then makes the extra draws)."""
        return bool(self.head_features or self.photos != PHOTOS_NONE or self.p_lowres > 0
                    or self.p_motion_blur > 0 or self.p_jpeg > 0)

    @classmethod
    def from_dict(cls, data: dict, missing: str = "default") -> "SynthConfig":
        """Rebuild from ``to_dict()``. Fields absent from ``data`` take their defaults, or with
        ``missing="legacy"`` the ``LEGACY`` values (a ``dataset.json`` of format /1)."""
        names = {f.name for f in fields(cls)}
        unknown = set(data) - names
        if unknown:
            raise ValueError(f"unknown SynthConfig fields: {sorted(unknown)}")
        if missing not in ("default", "legacy"):
            raise ValueError(f"missing must be 'default' or 'legacy', got {missing!r}")
        if missing == "legacy":
            data = {**LEGACY, **data}
        return cls(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in data.items()})


#: realism off: what a config without these fields (format hmr_ros.synthetic/1) meant
LEGACY = {"head_features": False, "photos": PHOTOS_NONE, "p_photo_background": 0.0,
          "p_photo_clothing": 0.0, "p_photo_occluder": 0.0, "p_lowres": 0.0,
          "p_motion_blur": 0.0, "p_jpeg": 0.0}
