"""Camera intrinsics for ``hmr-ros live``: a ROS camera_info YAML, or an assumed field of view.

Without calibration the pipeline assumes a focal length equal to the image diagonal in pixels
(`hmr_ros.runtime.camera.resolve_intrinsics`), i.e. a diagonal field of view of
2 atan(1/2) = 53.1 degrees; ``--fov`` sets another diagonal field of view (webcam data sheets
quote the diagonal one).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np

from .sources import LiveError

__all__ = ["CameraCalibration", "load_camera_info_yaml", "fov_intrinsics", "diagonal_fov_deg",
           "PIPELINE_ASSUMED_FOV_DEG"]

log = logging.getLogger("hmr_ros.live")

#: the diagonal field of view the pipeline assumes without camera_info (focal = diagonal)
PIPELINE_ASSUMED_FOV_DEG = math.degrees(2.0 * math.atan(0.5))


@dataclass(frozen=True)
class CameraCalibration:
    K: np.ndarray  #: 3 x 3
    width: int
    height: int
    distortion_model: str = ""
    D: Optional[np.ndarray] = None
    source: str = ""

    def for_size(self, width: int, height: int) -> np.ndarray:
        """K for frames of ``width`` x ``height``: scaled when the camera delivers another
        resolution of the same aspect ratio; a different aspect ratio is an error (the
        calibration is for another camera mode)."""
        if (width, height) == (self.width, self.height) or not (self.width and self.height):
            return self.K
        sx, sy = width / self.width, height / self.height
        if abs(sx - sy) > 0.01 * max(sx, sy):
            raise LiveError(f"{self.source}: calibration is for {self.width}x{self.height}, the "
                            f"frames are {width}x{height} (another aspect ratio): calibrate "
                            "this mode, or leave out --camera-info")
        K = self.K.copy()
        K[0] *= sx
        K[1] *= sy
        return K


def load_camera_info_yaml(path: Any) -> CameraCalibration:
    """A camera_info YAML as camera_calibration / camera_info_manager write it (image_width,
    image_height, camera_matrix {rows, cols, data}, distortion_model, distortion_coefficients)."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise LiveError(f"camera_info file not found: {path}")
    try:
        doc = yaml.safe_load(path.read_text())
        K = np.asarray(doc["camera_matrix"]["data"], np.float64).reshape(3, 3)
        width, height = int(doc.get("image_width", 0)), int(doc.get("image_height", 0))
    except (yaml.YAMLError, KeyError, TypeError, ValueError) as exc:
        raise LiveError(f"{path}: not a camera_info YAML (needs camera_matrix.data with 9 "
                        f"numbers, image_width, image_height): {type(exc).__name__}: "
                        f"{exc}") from exc
    if not np.isfinite(K).all() or K[0, 0] <= 0 or K[1, 1] <= 0:
        raise LiveError(f"{path}: camera_matrix has no usable focal length: {K.tolist()}")
    dist = doc.get("distortion_coefficients") or {}
    D = np.asarray(dist.get("data", []), np.float64) if isinstance(dist, dict) else None
    return CameraCalibration(K=K, width=width, height=height,
                             distortion_model=str(doc.get("distortion_model", "")), D=D,
                             source=str(path))


def fov_intrinsics(fov_deg: float, width: int, height: int) -> np.ndarray:
    """K of a pinhole camera with the given diagonal field of view, principal point centred
    (in the convention the pipeline uses when it assumes one)."""
    if not 1.0 <= fov_deg <= 179.0:
        raise LiveError(f"--fov must be between 1 and 179 degrees, got {fov_deg}")
    f = 0.5 * math.hypot(width, height) / math.tan(math.radians(fov_deg) / 2.0)
    return np.array([[f, 0, width / 2.0], [0, f, height / 2.0], [0, 0, 1]], np.float64)


def diagonal_fov_deg(K: np.ndarray, width: int, height: int) -> float:
    """The diagonal field of view of ``K`` for an image of that size."""
    f = 0.5 * (float(K[0, 0]) + float(K[1, 1]))
    return math.degrees(2.0 * math.atan(0.5 * math.hypot(width, height) / f))
