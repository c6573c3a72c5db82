"""``BodyModel``: the arrays of an SMPL-layout body, checked once at construction."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, Optional, Tuple

import numpy as np

from .constants import NUM_BETAS, NUM_JOINTS, NUM_POSE_FEATURES, PARENTS
from .errors import BodyModelError
from .uv_atlas import UVAtlas, build_uv_atlas

__all__ = ["BodyModel"]

_FLOAT_FIELDS = ("v_template", "shapedirs", "posedirs", "j_regressor", "weights")


@dataclass(frozen=True, eq=False)
class BodyModel:
    """An SMPL-layout body model (DESIGN.md §4), float32 NumPy, read-only.

    Arrays are converted to float32 / int64 and made read-only on construction, then validated:
    a ``BodyModel`` that exists is a usable one. ``posedirs`` is ``(207, V*3)`` as in
    ``smplx.lbs``: ``v_posed = v_shaped + (pose_feature @ posedirs).reshape(B, V, 3)`` with
    ``pose_feature = (R[:, 1:] - I).reshape(B, 207)``.
    """

    v_template: np.ndarray  # V x 3, metres, T-pose, y up, facing +z
    shapedirs: np.ndarray  # V x 3 x 10
    posedirs: np.ndarray  # 207 x V*3
    j_regressor: np.ndarray  # 24 x V
    weights: np.ndarray  # V x 24 skinning weights
    faces: np.ndarray  # F x 3 int64
    parents: np.ndarray = field(default_factory=lambda: PARENTS.copy())  # 24 int64
    name: str = "body model"  # where it came from: a file path or "procedural(seed=0)"
    part: np.ndarray = field(init=False, repr=False)  # V int64: argmax skinning weight
    _cache: Dict[Any, Any] = field(init=False, repr=False, default_factory=dict)

    def __post_init__(self) -> None:
        for key in _FLOAT_FIELDS:
            object.__setattr__(self, key, np.ascontiguousarray(getattr(self, key), np.float32))
        for key in ("faces", "parents"):
            object.__setattr__(self, key, np.ascontiguousarray(getattr(self, key), np.int64))
        self.validate()
        object.__setattr__(self, "part", np.argmax(self.weights, axis=1).astype(np.int64))
        for key in (*_FLOAT_FIELDS, "faces", "parents", "part"):
            getattr(self, key).setflags(write=False)

    @property
    def num_vertices(self) -> int:
        return int(self.v_template.shape[0])

    @property
    def num_faces(self) -> int:
        return int(self.faces.shape[0])

    @property
    def rest_joints(self) -> np.ndarray:
        """Joint positions of the template: 24 x 3 (``j_regressor @ v_template``)."""
        return self.j_regressor.astype(np.float64) @ self.v_template.astype(np.float64)

    def validate(self) -> None:
        """Raise ``BodyModelError`` naming the first field whose shape or content is wrong."""
        v = self.v_template.shape[0] if self.v_template.ndim == 2 else -1
        expected: Tuple[Tuple[str, Tuple[int, ...], str], ...] = (
            ("v_template", (v, 3), "(V, 3)"),
            ("shapedirs", (v, 3, NUM_BETAS), f"(V, 3, {NUM_BETAS})"),
            ("posedirs", (NUM_POSE_FEATURES, v * 3), f"({NUM_POSE_FEATURES}, V*3)"),
            ("j_regressor", (NUM_JOINTS, v), f"({NUM_JOINTS}, V)"),
            ("weights", (v, NUM_JOINTS), f"(V, {NUM_JOINTS})"),
            ("parents", (NUM_JOINTS,), f"({NUM_JOINTS},)"),
        )
        for key, shape, text in expected:
            arr = getattr(self, key)
            if v <= 0 or arr.shape != shape:
                raise BodyModelError(
                    f"{self.name}: field '{key}' has shape {arr.shape}, expected {text}"
                    + (f" with V={v}" if v > 0 else "")
                )
            if arr.dtype.kind == "f" and not np.all(np.isfinite(arr)):
                raise BodyModelError(f"{self.name}: field '{key}' contains NaN or inf")
        if self.faces.ndim != 2 or self.faces.shape[1] != 3 or self.faces.shape[0] == 0:
            raise BodyModelError(
                f"{self.name}: field 'faces' has shape {self.faces.shape}, expected (F, 3)"
            )
        if self.faces.min() < 0 or self.faces.max() >= v:
            raise BodyModelError(f"{self.name}: field 'faces' indexes outside [0, {v})")
        if not np.array_equal(self.parents, PARENTS):
            raise BodyModelError(
                f"{self.name}: field 'parents' is {self.parents.tolist()}, expected the SMPL "
                f"kinematic tree {PARENTS.tolist()}"
            )
        if self.weights.min() < -1e-6 or not np.allclose(self.weights.sum(1), 1, atol=1e-4):
            raise BodyModelError(
                f"{self.name}: field 'weights' must be non-negative with rows summing to 1"
            )

    def uv_atlas(self) -> UVAtlas:
        """The model's UV atlas (24 part charts on a 5x5 grid), built once and cached."""
        if "uv_atlas" not in self._cache:
            self._cache["uv_atlas"] = build_uv_atlas(self)
        return self._cache["uv_atlas"]

    def atlas_part_map(self, size: int) -> np.ndarray:
        """Part id per texel of the size x size atlas, -1 where empty (cached per size)."""
        return self.uv_atlas().part_map(size)

    def to_torch(self, device: Optional[Any] = None, dtype: Optional[Any] = None):
        """The model as a ``torch.nn.Module`` of buffers named as in smplx, for training.

        Imported lazily so that the body package does not pull in torch.
        """
        from .torch_buffers import BodyBuffers

        return BodyBuffers(self, device=device, dtype=dtype)
