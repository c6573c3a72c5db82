"""Reading what users hand to the command line: images, camera_info YAML, box lists."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np

from hmr_ros.runtime.boxes import Box

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


def collect_images(paths: Sequence[str]) -> List[Path]:
    """Files given directly, plus the images inside given folders (sorted); missing paths raise."""
    found: List[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            found += sorted(q for q in p.iterdir() if q.suffix.lower() in IMAGE_SUFFIXES)
        elif p.is_file():
            found.append(p)
        else:
            raise FileNotFoundError(f"{p}: no such image or folder")
    return found


def read_rgb(path: Path) -> Optional[np.ndarray]:
    """H x W x 3 uint8 RGB, or None when the file is not a readable image."""
    import cv2

    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    return None if bgr is None else np.ascontiguousarray(bgr[..., ::-1])


def read_camera_info(path: Path) -> np.ndarray:
    """3x3 K from a ROS camera_info YAML (``camera_matrix: {data: [...]}`` as written by
    camera_calibration, or ``k: [...]`` as in a CameraInfo message dump)."""
    import yaml

    data = yaml.safe_load(Path(path).read_text())
    if not isinstance(data, dict):
        raise ValueError(f"{path}: not a camera_info YAML mapping")
    if "camera_matrix" in data:
        values = data["camera_matrix"].get("data")
    else:
        values = data.get("k", data.get("K"))
    K = np.asarray(values, np.float64)
    if K.size != 9:
        raise ValueError(f"{path}: expected 9 values in camera_matrix.data or k, got {K.size}")
    return K.reshape(3, 3)


def read_boxes(path: Path) -> Dict[str, List[Box]]:
    """``{"image.png": [[x0, y0, x1, y1(, score)], ...], ...}``; the key ``"*"`` applies to
    every image without its own entry."""
    data = json.loads(Path(path).read_text())
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected an object mapping image names to box lists")
    out = {}
    for name, rows in data.items():
        boxes = []
        for row in rows:
            if len(row) not in (4, 5):
                raise ValueError(f"{path}: box {row} for {name} needs 4 or 5 numbers")
            boxes.append(Box(*map(float, row[:4]), float(row[4]) if len(row) == 5 else 1.0))
        out[name] = boxes
    return out
