"""Person masks to score mesh silhouettes against, and the silhouettes themselves."""

from __future__ import annotations

from typing import Optional

import numpy as np

#: background subtraction: per-pixel max |frame - background| over RGB above this is foreground
DIFF_THRESHOLD = 30
#: median background from this many frames spread evenly over the whole video
BACKGROUND_SAMPLES = 100


def median_background(path: str, samples: int = BACKGROUND_SAMPLES) -> Optional[np.ndarray]:
    """RGB uint8 median of ``samples`` frames spread evenly over the video at ``path`` (static
    camera: walkers move on, the scene stays); None when the video yields no frame."""
    import cv2

    cap = cv2.VideoCapture(str(path))
    n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
    frames = []
    if n > 0:
        wanted = set(np.linspace(0, n - 1, min(samples, n)).round().astype(int).tolist())
        for i in range(n):  # sequential reads: seeking in AVI is not reliable
            ok = cap.grab()
            if not ok:
                break
            if i in wanted:
                ok, bgr = cap.retrieve()
                if ok:
                    frames.append(bgr[:, :, ::-1])
    cap.release()
    if not frames:
        return None
    return np.median(np.stack(frames), axis=0).astype(np.uint8)


def foreground_mask(rgb: np.ndarray, background: np.ndarray,
                    threshold: int = DIFF_THRESHOLD) -> np.ndarray:
    """Boolean (H, W): max over channels of |rgb - background| > ``threshold``, opened with a
    3 x 3 ellipse (speckle), closed with a 7 x 7 ellipse (gaps inside a walker), holes filled."""
    import cv2

    diff = np.abs(rgb.astype(np.int16) - background.astype(np.int16)).max(axis=2)
    m = (diff > threshold).astype(np.uint8)
    m = cv2.morphologyEx(m, cv2.MORPH_OPEN, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (3, 3)))
    m = cv2.morphologyEx(m, cv2.MORPH_CLOSE,
                         cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (7, 7)))
    return _fill_holes(m).astype(bool)


def _fill_holes(mask: np.ndarray) -> np.ndarray:
    import cv2

    contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    out = np.zeros_like(mask)
    cv2.drawContours(out, contours, -1, 1, thickness=-1)
    return out


def segmentation_mask(detector, rgb: np.ndarray, roi, threshold: float = 0.5) -> np.ndarray:
    """BlazePose's person segmentation for one region: the landmark model is run on ``roi``
    (a :class:`hmr_ros.detect.decode.Roi`) and its ``segmentation`` logits (1, 256, 256, in the
    region's frame) are thresholded at probability ``threshold`` after warping them into the
    image with the region's crop matrix (region tensor pixels -> image pixels). -> (H, W) bool;
    nothing outside the region."""
    import cv2

    from hmr_ros.detect.decode import LANDMARK_SIZE, roi_input

    stage = "segmentation" if "segmentation" in detector.backend.stages else "landmarks"
    out = detector.backend.run(stage, {"image": roi_input(rgb, roi)[None]})
    logits = np.asarray(out["segmentation"], np.float32).reshape(LANDMARK_SIZE, LANDMARK_SIZE)
    h, w = rgb.shape[:2]
    # warp the logits (smooth) rather than the thresholded mask; outside the region: -inf
    warped = cv2.warpAffine(logits, roi.crop_matrix(), (w, h), flags=cv2.INTER_LINEAR,
                            borderMode=cv2.BORDER_CONSTANT, borderValue=-100.0)
    return warped > float(np.log(threshold / (1.0 - threshold)))


def mesh_mask(vertices: np.ndarray, faces: np.ndarray, K: np.ndarray, height: int,
              width: int) -> np.ndarray:
    """Boolean (H, W) silhouette of a camera-frame mesh: its triangles rasterised with ``K``.
    The rasteriser puts pixel centres at (i + 0.5, j + 0.5), the rest of the runtime at
    integers (``project``, the detector): the principal point is shifted by half a pixel so
    both agree."""
    from hmr_ros import kernels as Kn

    Kr = np.array(K, np.float32, copy=True)
    Kr[0, 2] += 0.5
    Kr[1, 2] += 0.5
    face_id, _, _ = Kn.rasterize(np.ascontiguousarray(vertices, np.float32),
                                 np.ascontiguousarray(faces, np.int32), Kr, height, width)
    return face_id >= 0
