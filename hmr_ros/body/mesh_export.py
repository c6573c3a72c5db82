"""Write meshes as .obj or binary .ply, so a posed body can be opened in any 3D viewer."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional, Union

import numpy as np

__all__ = ["save_mesh", "part_colors"]


def save_mesh(
    path: Union[str, os.PathLike],
    vertices: np.ndarray,
    faces: np.ndarray,
    colors: Optional[np.ndarray] = None,
) -> Path:
    """Write a triangle mesh; the format follows the extension (.obj, or .ply = binary LE).

    vertices: V x 3; faces: F x 3 (0-based); colors: optional V x 3, uint8 or floats in [0, 1].
    OBJ colours use the common ``v x y z r g b`` extension (MeshLab, Blender).
    """
    path = Path(path)
    writers = {".obj": _write_obj, ".ply": _write_ply}
    if path.suffix.lower() not in writers:
        raise ValueError(f"{path}: unknown mesh format {path.suffix!r}; use .obj or .ply")
    vertices = np.asarray(vertices, dtype=np.float64)
    faces = np.asarray(faces)
    if vertices.ndim != 2 or vertices.shape[1] != 3:
        raise ValueError(f"vertices must have shape (V, 3), got {vertices.shape}")
    if faces.ndim != 2 or faces.shape[1] != 3 or faces.dtype.kind not in "iu":
        raise ValueError(f"faces must be integers of shape (F, 3), got {faces.shape} {faces.dtype}")
    if faces.size and (faces.min() < 0 or faces.max() >= len(vertices)):
        raise ValueError(f"faces index outside [0, {len(vertices)})")
    if colors is not None:
        colors = np.asarray(colors)
        if colors.shape != vertices.shape:
            raise ValueError(f"colors must have shape {vertices.shape}, got {colors.shape}")
        if colors.dtype != np.uint8:
            colors = np.round(np.clip(colors, 0.0, 1.0) * 255).astype(np.uint8)
    writers[path.suffix.lower()](path, vertices, faces.astype(np.int64), colors)
    return path


def part_colors(part: np.ndarray) -> np.ndarray:
    """A distinct, stable colour per part id: V -> V x 3 uint8 (golden-ratio hues)."""
    hue = (np.asarray(part) * 0.618033988749895) % 1.0
    k = (np.array([5.0, 3.0, 1.0]) + hue[:, None] * 6.0) % 6.0  # HSV -> RGB, s = 0.6, v = 0.95
    rgb = 0.95 - 0.95 * 0.6 * np.clip(np.minimum(k, 4.0 - k), 0.0, 1.0)
    return np.round(rgb * 255).astype(np.uint8)


def _write_obj(path: Path, vertices: np.ndarray, faces: np.ndarray, colors) -> None:
    with open(path, "w", encoding="ascii") as handle:
        handle.write("# written by hmr_ros\n")
        if colors is None:
            np.savetxt(handle, vertices, fmt="v %.6f %.6f %.6f")
        else:
            rows = np.concatenate([vertices, colors / 255.0], axis=1)
            np.savetxt(handle, rows, fmt="v %.6f %.6f %.6f %.4f %.4f %.4f")
        np.savetxt(handle, faces + 1, fmt="f %d %d %d")


def _write_ply(path: Path, vertices: np.ndarray, faces: np.ndarray, colors) -> None:
    vertex_fields = [("x", "<f4"), ("y", "<f4"), ("z", "<f4")]
    if colors is not None:
        vertex_fields += [("red", "u1"), ("green", "u1"), ("blue", "u1")]
    vert = np.empty(len(vertices), dtype=vertex_fields)
    vert["x"], vert["y"], vert["z"] = vertices.T
    if colors is not None:
        vert["red"], vert["green"], vert["blue"] = colors.T
    face = np.empty(len(faces), dtype=[("n", "u1"), ("index", "<i4", (3,))])
    face["n"], face["index"] = 3, faces
    header = ["ply", "format binary_little_endian 1.0", "comment written by hmr_ros",
              f"element vertex {len(vertices)}"]
    header += [f"property {'float' if kind == '<f4' else 'uchar'} {name}"
               for name, kind in vertex_fields]
    header += [f"element face {len(faces)}", "property list uchar int vertex_indices",
               "end_header"]
    with open(path, "wb") as handle:
        handle.write(("\n".join(header) + "\n").encode("ascii"))
        handle.write(vert.tobytes())
        handle.write(face.tobytes())
