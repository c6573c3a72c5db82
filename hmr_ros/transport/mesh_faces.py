"""The constant part of the mesh: ``hmr_ros/MeshFaces``, as a message and as a file.

The node publishes it once on a transient-local topic; the same bytes ship as a package
resource for the bundled (procedural) body, so a consumer that starts before the node, or reads
a bag without the faces topic, can still draw the mesh. For a user's SMPL file, ``hmr-ros body
faces --model SMPL_NEUTRAL.npz --out faces.cdr`` writes the equivalent file (SMPL data is never
shipped). The file is the message's CDR encoding, readable by any ROS 2 CDR decoder.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import numpy as np

from . import cdr, types

__all__ = ["FACES_TYPE", "mesh_faces_message", "faces_resource_path", "load_faces_resource",
           "write_faces_file"]

FACES_TYPE = "hmr_ros/msg/MeshFaces"
_RESOURCES = Path(__file__).resolve().parents[1] / "resources"


def mesh_faces_message(body_model: str, faces: np.ndarray, vertex_part: np.ndarray,
                       header: Optional[Any] = None) -> Any:
    """A MeshFaces message: ``faces`` (F, 3) vertex indices, ``vertex_part`` (V,) part ids."""
    faces = np.asarray(faces)
    part = np.asarray(vertex_part)
    if faces.ndim != 2 or faces.shape[1] != 3:
        raise ValueError(f"faces must be (F, 3), got {faces.shape}")
    if faces.size and (faces.min() < 0 or faces.max() >= len(part)):
        raise ValueError(f"face indices must lie in [0, {len(part)}): got "
                         f"[{faces.min()}, {faces.max()}]")
    if part.size and (part.min() < 0 or part.max() > 23):
        raise ValueError("vertex parts must lie in [0, 23]")
    fields = dict(body_model=body_model, num_vertices=len(part),
                  triangles=faces.astype(np.uint32).ravel(), vertex_part=part.astype(np.uint8))
    if header is not None:
        fields["header"] = header
    return types.make(FACES_TYPE, **fields)


def faces_resource_path(body_model: str) -> Path:
    """The shipped file of a body model's faces (``procedural(seed=0)`` ships)."""
    safe = "".join(c if c.isalnum() else "_" for c in body_model).strip("_")
    return _RESOURCES / f"mesh_faces_{safe}.cdr"


def load_faces_resource(body_model: str) -> Any:
    """The shipped MeshFaces message of ``body_model`` (FileNotFoundError if none ships)."""
    path = faces_resource_path(body_model)
    if not path.is_file():
        raise FileNotFoundError(f"no shipped mesh faces for body model {body_model!r} ({path}); "
                                "write them with `hmr-ros body faces`")
    return cdr.deserialize(path.read_bytes(), FACES_TYPE)


def write_faces_file(path: Any, body: Any) -> Path:
    """Write a body model's MeshFaces (CDR, header zero) to ``path``."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(cdr.serialize(mesh_faces_message(body.name, body.faces, body.part), FACES_TYPE))
    return out
