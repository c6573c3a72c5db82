"""VisHMR at run time: stage graphs on a backend, compiled kernels between and after them.

One call takes normalised crops and the flow noise ``z`` and returns the stage outputs and the
merged mesh: stage A -> ``iuv_warp`` -> stage B -> matching + kinematic slerp + LBS. The backend
(ONNX Runtime, TensorRT, torch) only runs the graphs; this class owns the paper's data flow.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Optional, Union

import numpy as np

from hmr_ros import kernels as K

from .backends import select_backend
from .errors import EngineError
from .merge import merge
from .placement import array_ops, choose_placement


class VisHMRRunner:
    """An exported VisHMR on any backend (``select_backend`` names), with a body model.

    ``device_resident`` (``auto`` | True | False): on a GPU backend (TensorRT, or the torch
    backend on CUDA) ``auto`` keeps every intermediate on the device and on the backend's one
    stream -- engine outputs feed the CUDA kernels and the next engine directly, and the host
    gets the results once per call (:mod:`~hmr_ros.runtime.placement`). On CPU backends the
    same code runs on NumPy arrays.
    """

    def __init__(self, model_dir: Union[str, Path], body, backend: str = "auto",
                 posedirs_dtype=np.float32, device_resident="auto", **backend_options):
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
        #: the keypoint-conditioned variant: stage B takes (B, 17, 3) crop-normalised keypoints
        self.takes_keypoints = "keypoints" in self.backend.input_names("stage_b")
        self.lbs_model = K.LbsModel.from_body(body, posedirs_dtype=posedirs_dtype)
        self.part_map = body.atlas_part_map(self.atlas_size)
        self._lock = threading.Lock()  # one call at a time: engine contexts, staging buffers
        self.placement = choose_placement(self.backend, device_resident)
        if hasattr(self.backend, "outputs_on_device"):  # TensorRT: hand over device buffers
            self.backend.outputs_on_device = self.placement.device_resident
        with self.placement.scope():
            self._part_map = self.placement.upload(self.part_map, "part_map", dtype=np.int32)

    @property
    def device_resident(self) -> bool:
        return self.placement.device_resident

    def default_z(self, batch: int, seed: int = 0) -> np.ndarray:
        """Hypothesis 0 at z = 0 (the mode), the others drawn from N(0, 1) with ``seed``."""
        z = np.random.default_rng(seed).standard_normal(
            (batch, self.num_hypotheses, self.pose_dim)).astype(np.float32)
        z[:, 0] = 0.0
        return z

    def lbs(self, betas: np.ndarray, rel_rotmats: np.ndarray):
        """The body's mesh for given shapes and relative rotations (compiled LBS)."""
        return self.lbs_model(betas, rel_rotmats)

    def remerge(self, outputs: dict, mode: str) -> dict:
        """The same stage-B outputs (a call's result) merged in another mode (paper table 2's
        ablations: one stage run, four merges) -> ``vertices``, ``joints``, ``rel_rotmats``,
        ``best`` as NumPy arrays."""
        keys = ("abs_vis", "omega", "hyp_rel", "hyp_loglik", "betas")
        put = self.placement
        with self._lock, put.scope():
            b = {k: put.upload(outputs[k], f"remerge_{k}") for k in keys}
            merged = merge(b, self.lbs_model, mode)
            return put.download({k: merged[k] for k in ("vertices", "joints", "rel_rotmats",
                                                         "best")})

    def __call__(self, crops, z: Optional[np.ndarray] = None, mode: str = "ks_matched",
                 keypoints: Optional[np.ndarray] = None) -> dict:
        """Crops (B x 3 x c x c float32; NumPy, or a device array) -> stage outputs and the
        merged mesh as NumPy arrays, plus per-stage ``timing`` in seconds.

        A backend with a batch limit (TensorRT engines' ``max_batch``) gets the crops in
        chunks; the outputs are concatenated and the stage times summed. ``keypoints`` (B x 17
        x 3, crop-normalised, confidence 0 = absent) feed the keypoint-conditioned variant;
        other models ignore them."""
        limit = getattr(self.backend, "max_batch", None)
        shape = tuple(getattr(crops, "shape", np.shape(crops)))
        batch = int(shape[0]) if len(shape) == 4 else 0
        if limit and batch > limit:
            z_all = self.default_z(batch) if z is None else z
            parts = [self._call(crops[i:i + limit], z_all[i:i + limit], mode,
                                None if keypoints is None else keypoints[i:i + limit])
                     for i in range(0, batch, limit)]
            out = {k: np.concatenate([p[k] for p in parts], axis=0)
                   for k in parts[0] if k != "timing"}
            timing: dict = {}
            for p in parts:
                for stage, sec in p["timing"].items():
                    timing[stage] = timing.get(stage, 0.0) + sec
            out["timing"] = timing
            return out
        return self._call(crops, z, mode, keypoints)

    def _call(self, crops, z: Optional[np.ndarray], mode: str, keypoints=None) -> dict:
        c = self.crop_size
        shape = tuple(getattr(crops, "shape", np.shape(crops)))
        if len(shape) != 4 or shape[1:] != (3, c, c):
            raise EngineError(f"crops must have shape (B, 3, {c}, {c}), got {shape}")
        B = shape[0]
        z = self.default_z(B) if z is None else np.ascontiguousarray(z, dtype=np.float32)
        if z.shape != (B, self.num_hypotheses, self.pose_dim):
            raise EngineError(f"z must have shape ({B}, {self.num_hypotheses}, {self.pose_dim}), "
                              f"got {z.shape}")
        put = self.placement
        with self._lock, put.scope():
            clock = put.stopwatch()
            images, z = put.upload(crops, "crops"), put.upload(z, "z")
            clock.lap("upload")
            a = {k: put.adopt(v) for k, v in self.backend.run("stage_a", {"images": images}).items()}
            clock.lap("stage_a")
            uv = K.iuv_warp(a["features"], a["iuv"], self.atlas_size, self.fg_threshold)
            clock.lap("iuv_warp")
            feeds = {"uv_features": uv, "pooled": a["pooled"], "z": z}
            if self.takes_keypoints:
                kp = (np.zeros((B, 17, 3), np.float32) if keypoints is None
                      else np.ascontiguousarray(keypoints, dtype=np.float32))
                if kp.shape != (B, 17, 3):
                    raise EngineError(f"keypoints must have shape ({B}, 17, 3), got {kp.shape}")
                feeds["keypoints"] = put.upload(kp, "keypoints")
            b = {k: put.adopt(v) for k, v in self.backend.run("stage_b", feeds).items()}
            clock.lap("stage_b")
            merged = merge(b, self.lbs_model, mode)
            clock.lap("merge_lbs")
            occupancy = array_ops(uv).contiguous(uv[:, -1])
            warped_visibility = K.part_visibility(occupancy, self._part_map)
            out = put.download({**b, **merged, "iuv": a["iuv"],
                                "uv_visibility": warped_visibility})
            clock.lap("download")
        timing = clock.result()
        if not put.device_resident:  # nothing moves on the host: no transfer stages
            for stage in ("upload", "download"):
                timing.pop(stage, None)
        out["timing"] = timing
        return out


class OrtVisHMR(VisHMRRunner):
    """VisHMR on ONNX Runtime (CPU by default): the runtime's fallback everywhere."""

    def __init__(self, model_dir: Union[str, Path], body, providers=("CPUExecutionProvider",),
                 threads: Optional[int] = None, posedirs_dtype=np.float32):
        super().__init__(model_dir, body, backend="onnxruntime", posedirs_dtype=posedirs_dtype,
                         providers=list(providers), threads=threads)

    @property
    def sessions(self) -> dict:
        return self.backend.sessions
