"""Contact sheet of synthetic samples, to eyeball the generator (``hmr-ros synth --preview``).

One row per sample, six tiles: RGB | IUV (R = U, G = V on the main person) | part segmentation
(main person in part colours, other people grey, occluders dark blue) | RGB with the main
person's skeleton, joints and bones coloured red (ω = 0) -> green (ω = 1) by the GT visibility
of the child part | the 24 visibility values as bars (part colours underneath, a tick at 0.5) |
RGB with every person's COCO-17 skeleton: points green when visible, orange when occluded (not
drawn outside the image); left limbs cyan, right magenta; a white bar at the top-left grows with
the main person's ``face_front`` (the face is turned towards the camera).
Small crops are scaled up (nearest neighbour) so each tile is at least 160 pixels.
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict, Sequence, Union

import numpy as np

from hmr_ros.body import PARENTS, part_colors
from hmr_ros.body.keypoints import COCO17_EDGES, COCO17_NAMES

from .png import write_png

__all__ = ["write_preview", "contact_sheet", "sample_tiles"]

_PART_RGB = part_colors(np.arange(24)).astype(np.uint8)
_GAP = 4


def _vis_colour(v: np.ndarray) -> np.ndarray:
    v = np.clip(np.asarray(v, np.float64), 0, 1)[..., None]
    return np.round((1 - v) * np.array([230, 30, 30]) + v * np.array([30, 220, 30])).astype(
        np.uint8)


def _draw_line(img: np.ndarray, p0, p1, colour, width: int = 1) -> None:
    h, w = img.shape[:2]
    n = int(np.ceil(np.max(np.abs(np.subtract(p1, p0))))) + 1
    t = np.linspace(0, 1, max(n, 2))[:, None]
    pts = np.round(np.asarray(p0) * (1 - t) + np.asarray(p1) * t - 0.5).astype(int)
    for dy in range(-(width // 2), width - width // 2):
        for dx in range(-(width // 2), width - width // 2):
            x, y = pts[:, 0] + dx, pts[:, 1] + dy
            ok = (x >= 0) & (x < w) & (y >= 0) & (y < h)
            img[y[ok], x[ok]] = colour


def _draw_dot(img: np.ndarray, p, colour, r: int) -> None:
    h, w = img.shape[:2]
    x, y = int(np.floor(p[0])), int(np.floor(p[1]))
    img[max(y - r, 0):max(min(y + r + 1, h), 0), max(x - r, 0):max(min(x + r + 1, w), 0)] = \
        colour


def _coco_tile(rgb: np.ndarray, sample: Dict[str, np.ndarray], scale: int) -> np.ndarray:
    tile = (rgb.astype(np.float32) * 0.7).astype(np.uint8)
    if "people_coco17" not in sample:
        return tile
    r = max(1, rgb.shape[0] // 120)
    valid = np.asarray(sample["people_valid"])
    for p in np.flatnonzero(valid):
        kp = np.asarray(sample["people_coco17"])[p] * scale
        vis = np.asarray(sample["people_coco17_vis"])[p]
        for a, b in COCO17_EDGES:
            if vis[a] and vis[b]:
                left = COCO17_NAMES[b].startswith("left")
                right = COCO17_NAMES[b].startswith("right")
                colour = (0, 220, 220) if left else (230, 60, 230) if right else (240, 240, 240)
                _draw_line(tile, kp[a], kp[b], colour, width=r if p == 0 else 1)
        for j in range(len(kp)):
            if vis[j]:
                _draw_dot(tile, kp[j], (40, 230, 40) if vis[j] == 2 else (255, 150, 0), r)
    front = float(np.asarray(sample["people_face_front"])[0])
    width = int(round(max(front, 0.0) * (tile.shape[1] // 3)))
    tile[:max(2, r + 1), :width] = 255
    return tile


def sample_tiles(sample: Dict[str, np.ndarray], scale: int = 1) -> Sequence[np.ndarray]:
    """The six tiles (H*scale x W*scale x 3 uint8) of one sample dict (NumPy arrays)."""
    up = (lambda a: np.repeat(np.repeat(a, scale, 0), scale, 1)) if scale > 1 else (lambda a: a)
    rgb = up(np.asarray(sample["image"]))
    iuv = np.asarray(sample["iuv"], np.float32)
    fg = iuv[0] > 0.5
    iuv_rgb = np.zeros(iuv.shape[1:] + (3,), np.uint8)
    iuv_rgb[fg] = np.round(np.stack([iuv[1][fg], iuv[2][fg], np.full(fg.sum(), 0.6)], -1)
                           * 255).astype(np.uint8)
    seg = np.asarray(sample["part_seg"])
    seg_rgb = np.zeros(seg.shape + (3,), np.uint8)
    seg_rgb[seg >= 0] = _PART_RGB[seg[seg >= 0]]
    seg_rgb[seg == -2] = (120, 120, 120)
    seg_rgb[seg == -3] = (50, 60, 110)
    overlay = (rgb.astype(np.float32) * 0.6).astype(np.uint8)
    kp = np.asarray(sample["people_keypoints2d"])[0] * scale
    vis = np.asarray(sample["people_visibility"])[0]
    colours = _vis_colour(vis)
    r = max(1, rgb.shape[0] // 100)
    for j in range(1, 24):
        _draw_line(overlay, kp[PARENTS[j]], kp[j], colours[j], width=r)
    for j in range(24):
        _draw_dot(overlay, kp[j], colours[j], r + 1)
    size = rgb.shape[0]
    bars = np.full((size, size, 3), 24, np.uint8)
    bw = size / 24.0
    strip = max(3, size // 20)
    half = size - strip - int(round(0.5 * (size - strip - 2)))
    for j in range(24):
        x0, x1 = int(round(j * bw)) + 1, int(round((j + 1) * bw)) - 1
        height = int(round(np.clip(vis[j], 0, 1) * (size - strip - 2)))
        bars[size - strip - height:size - strip, x0:max(x1, x0 + 1)] = colours[j]
        bars[size - strip:, x0:max(x1, x0 + 1)] = _PART_RGB[j]
    bars[half, :] = (200, 200, 200)
    return [rgb, up(iuv_rgb), up(seg_rgb), overlay, bars, _coco_tile(rgb, sample, scale)]


def contact_sheet(samples: Sequence[Dict[str, np.ndarray]], min_tile: int = 160) -> np.ndarray:
    """Rows of tiles for each sample -> one H x W x 3 uint8 image."""
    if not samples:
        raise ValueError("contact_sheet needs at least one sample")
    size = int(np.asarray(samples[0]["image"]).shape[0])
    scale = max(1, int(np.ceil(min_tile / size)))
    rows = []
    for s in samples:
        tiles = sample_tiles(s, scale)
        row = np.full((tiles[0].shape[0], len(tiles) * (tiles[0].shape[1] + _GAP) + _GAP, 3),
                      255, np.uint8)
        for k, t in enumerate(tiles):
            x = _GAP + k * (t.shape[1] + _GAP)
            row[:, x:x + t.shape[1]] = t
        rows.append(row)
    gap = np.full((_GAP, rows[0].shape[1], 3), 255, np.uint8)
    parts = [gap]
    for row in rows:
        parts += [row, gap]
    return np.concatenate(parts, axis=0)


def write_preview(path: Union[str, Path], samples: Sequence[Dict[str, np.ndarray]]) -> Path:
    """Write the contact sheet of ``samples`` (generator dicts) as a PNG."""
    return write_png(path, contact_sheet(samples))
