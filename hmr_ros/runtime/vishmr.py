"""VisHMR at run time: stage graphs on a backend, compiled kernels between and after them.

One call takes normalised crops and the flow noise ``z`` and returns the stage outputs and the
merged mesh: stage A -> ``iuv_warp`` -> stage B -> matching + kinematic slerp + LBS. The backend
(ONNX Runtime, TensorRT, torch) only runs the graphs; this class owns the paper's data flow.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Optional, Union

import numpy as np

from hmr_ros import kernels as K

from .backends import select_backend
from .errors import EngineError
from .merge import merge


class VisHMRRunner:
    """An exported VisHMR on any backend (``select_backend`` names), with a body model."""

    def __init__(self, model_dir: Union[str, Path], body, backend: str = "auto",
                 posedirs_dtype=np.float32, **backend_options):
        self.model_dir = Path(model_dir)
        self.backend = select_backend(backend, self.model_dir, **backend_options)
        self.manifest = self.backend.manifest
        expected_v = self.manifest.body.get("num_vertices")
        if expected_v is not None and expected_v != body.num_vertices:
            raise EngineError(f"{self.model_dir}: exported for a body with {expected_v} vertices "
                              f"({self.manifest.body.get('name')}), got one with "
                              f"{body.num_vertices} ({getattr(body, 'name', '?')})")
        heads = self.manifest.heads
        self.atlas_size = int(heads["atlas_size"])
        self.fg_threshold = float(heads["fg_threshold"])
        self.num_hypotheses = int(heads["num_hypotheses"])
        self.pose_dim = int(heads["pose_dim"])
        self.crop_size = int(self.manifest.preprocessing["crop_size"])
        self.lbs_model = K.LbsModel.from_body(body, posedirs_dtype=posedirs_dtype)
        self.part_map = body.atlas_part_map(self.atlas_size)

    def default_z(self, batch: int, seed: int = 0) -> np.ndarray:
        """Hypothesis 0 at z = 0 (the mode), the others drawn from N(0, 1) with ``seed``."""
        z = np.random.default_rng(seed).standard_normal(
            (batch, self.num_hypotheses, self.pose_dim)).astype(np.float32)
        z[:, 0] = 0.0
        return z

    def lbs(self, betas: np.ndarray, rel_rotmats: np.ndarray):
        """The body's mesh for given shapes and relative rotations (compiled LBS)."""
        return self.lbs_model(betas, rel_rotmats)

    def __call__(self, crops: np.ndarray, z: Optional[np.ndarray] = None,
                 mode: str = "ks_matched") -> dict:
        crops = np.ascontiguousarray(crops, dtype=np.float32)
        c = self.crop_size
        if crops.ndim != 4 or crops.shape[1:] != (3, c, c):
            raise EngineError(f"crops must have shape (B, 3, {c}, {c}), got {crops.shape}")
        B = crops.shape[0]
        z = self.default_z(B) if z is None else np.ascontiguousarray(z, dtype=np.float32)
        if z.shape != (B, self.num_hypotheses, self.pose_dim):
            raise EngineError(f"z must have shape ({B}, {self.num_hypotheses}, {self.pose_dim}), "
                              f"got {z.shape}")
        timing = {}
        t = time.perf_counter()
        a = self.backend.run("stage_a", {"images": crops})
        timing["stage_a"] = time.perf_counter() - t
        t = time.perf_counter()
        features = np.ascontiguousarray(a["features"], dtype=np.float32)
        iuv = np.ascontiguousarray(a["iuv"], dtype=np.float32)
        uv = K.iuv_warp(features, iuv, self.atlas_size, self.fg_threshold)
        timing["iuv_warp"] = time.perf_counter() - t
        t = time.perf_counter()
        stage_b = self.backend.run("stage_b", {"uv_features": uv, "pooled": a["pooled"], "z": z})
        timing["stage_b"] = time.perf_counter() - t
        t = time.perf_counter()
        merged = merge(stage_b, self.lbs_model, mode)
        timing["merge_lbs"] = time.perf_counter() - t
        warped_visibility = K.part_visibility(np.ascontiguousarray(uv[:, -1]), self.part_map)
        return {**stage_b, **merged, "iuv": iuv, "uv_visibility": warped_visibility,
                "timing": timing}


class OrtVisHMR(VisHMRRunner):
    """VisHMR on ONNX Runtime (CPU by default): the runtime's fallback everywhere."""

    def __init__(self, model_dir: Union[str, Path], body, providers=("CPUExecutionProvider",),
                 threads: Optional[int] = None, posedirs_dtype=np.float32):
        super().__init__(model_dir, body, backend="onnxruntime", posedirs_dtype=posedirs_dtype,
                         providers=list(providers), threads=threads)

    @property
    def sessions(self) -> dict:
        return self.backend.sessions
