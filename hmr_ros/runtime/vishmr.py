"""VisHMR on ONNX Runtime: stage graphs + compiled kernels, as exported by ``hmr-ros export``.

One call takes normalised crops and the flow noise ``z`` and returns the stage outputs and the
merged mesh. The TensorRT and torch backends of the runtime follow the same stage contract
(names and shapes from the manifest).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Optional, Union

import numpy as np

from hmr_ros import kernels as K
from hmr_ros.export.errors import ExportError
from hmr_ros.export.manifest import Manifest

from .errors import EngineError
from .merge import merge


class OrtVisHMR:
    """Runs an exported VisHMR directory with ONNX Runtime on the CPU (or a given provider)."""

    def __init__(self, model_dir: Union[str, Path], body, providers=("CPUExecutionProvider",),
                 threads: Optional[int] = None, posedirs_dtype=np.float32):
        import onnxruntime as ort

        self.model_dir = Path(model_dir)
        try:
            self.manifest = Manifest.load(self.model_dir)
        except ExportError as exc:
            raise EngineError(str(exc)) from exc
        expected_v = self.manifest.body.get("num_vertices")
        if expected_v is not None and expected_v != body.num_vertices:
            raise EngineError(f"{self.model_dir}: exported for a body with {expected_v} vertices "
                              f"({self.manifest.body.get('name')}), got one with "
                              f"{body.num_vertices} ({getattr(body, 'name', '?')})")
        opts = ort.SessionOptions()
        # ORT's workers spin-wait after a run by default; the compiled kernels that run between
        # the stages then fight them for the same cores (seen as 10x stalls on 2 cores).
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        if threads:
            opts.intra_op_num_threads = threads
            opts.inter_op_num_threads = 1
        self.sessions = {name: ort.InferenceSession(str(self.manifest.stage_path(self.model_dir, name)),
                                                    sess_options=opts, providers=list(providers))
                         for name in ("stage_a", "stage_b")}
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
        features, iuv, pooled = self.sessions["stage_a"].run(None, {"images": crops})
        timing["stage_a"] = time.perf_counter() - t
        t = time.perf_counter()
        uv = K.iuv_warp(features, iuv, self.atlas_size, self.fg_threshold)
        timing["iuv_warp"] = time.perf_counter() - t
        t = time.perf_counter()
        names = [o.name for o in self.sessions["stage_b"].get_outputs()]
        values = self.sessions["stage_b"].run(None, {"uv_features": uv, "pooled": pooled, "z": z})
        stage_b = dict(zip(names, values))
        timing["stage_b"] = time.perf_counter() - t
        t = time.perf_counter()
        merged = merge(stage_b, self.lbs_model, mode)
        timing["merge_lbs"] = time.perf_counter() - t
        warped_visibility = K.part_visibility(np.ascontiguousarray(uv[:, -1]), self.part_map)
        return {**stage_b, **merged, "iuv": iuv, "uv_visibility": warped_visibility,
                "timing": timing}
