"""One-Euro filtering (Casiez et al. 2012) of pose and translation per track.

Little smoothing when a person moves fast (low lag), strong smoothing when still (low jitter).
Rotations are filtered as their 6D form and re-orthonormalised, which keeps them rotations.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Dict, Optional

import numpy as np


@dataclass
class OneEuroFilter:
    min_cutoff: float = 1.0  # Hz: smoothing at rest
    beta: float = 0.05  # speed coefficient: less smoothing when moving
    d_cutoff: float = 1.0  # Hz: for the derivative
    _x: Optional[np.ndarray] = None
    _dx: Optional[np.ndarray] = None
    _t: Optional[float] = None

    @staticmethod
    def _alpha(cutoff: float, dt: float) -> float:
        tau = 1.0 / (2 * math.pi * cutoff)
        return 1.0 / (1.0 + tau / dt)

    def __call__(self, x: np.ndarray, t: float) -> np.ndarray:
        x = np.asarray(x, np.float64)
        if self._x is None or self._t is None or t <= self._t:
            self._x, self._dx, self._t = x.copy(), np.zeros_like(x), t
            return x
        dt = t - self._t
        dx = (x - self._x) / dt
        a_d = self._alpha(self.d_cutoff, dt)
        self._dx = a_d * dx + (1 - a_d) * self._dx
        cutoff = self.min_cutoff + self.beta * np.abs(self._dx)
        tau = 1.0 / (2 * math.pi * cutoff)
        a = 1.0 / (1.0 + tau / dt)
        self._x = a * x + (1 - a) * self._x
        self._t = t
        return self._x


def _orthonormalise(rot6d: np.ndarray) -> np.ndarray:
    a1, a2 = rot6d[..., 0:3], rot6d[..., 3:6]
    b1 = a1 / np.linalg.norm(a1, axis=-1, keepdims=True)
    b2 = a2 - (b1 * a2).sum(-1, keepdims=True) * b1
    b2 /= np.linalg.norm(b2, axis=-1, keepdims=True)
    return np.stack([b1, b2, np.cross(b1, b2)], axis=-1)


@dataclass
class PoseSmoother:
    """Per-track One-Euro filters for relative rotations (J, 3, 3) and translation (3,)."""

    min_cutoff: float = 1.0
    beta: float = 0.05
    _filters: Dict[int, tuple] = field(default_factory=dict)

    def __call__(self, track_id: int, rotmats: np.ndarray, transl: np.ndarray, t: float):
        if track_id not in self._filters:
            self._filters[track_id] = (OneEuroFilter(self.min_cutoff, self.beta),
                                       OneEuroFilter(self.min_cutoff, self.beta))
        f_rot, f_tr = self._filters[track_id]
        rot6d = np.concatenate([rotmats[..., :, 0], rotmats[..., :, 1]], axis=-1)
        return _orthonormalise(f_rot(rot6d, t)), f_tr(transl, t)

    def forget(self, keep_ids) -> None:
        for tid in [k for k in self._filters if k not in set(keep_ids)]:
            del self._filters[tid]
