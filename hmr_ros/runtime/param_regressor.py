"""Top-down SMPL-parameter regressors at run time (OCHMR, ImpHMR, DPMesh): graphs, then LBS.

Their exported graphs map crops (and, for OCHMR, each person's centre maps; for DPMesh, each
person's COCO-17 keypoints) to parent-relative rotations, shape and a weak-perspective crop
camera; the compiled LBS kernel poses the body. OCHMR and ImpHMR export one graph
(``regressor``, `hmr_ros.export.export_param_regressor`); DPMesh a chain (``unet`` then
``regressor``, the manifest's ``heads.chain``), each graph fed by name from the inputs and the
earlier graphs' outputs. They have no visibility head: ``omega`` is NaN ("not predicted"), which
the node, the overlay and the evaluation treat as unknown rather than occluded. The runner
answers the same call as `VisHMRRunner`, so `FramePipeline`, the node and ``hmr-ros eval`` run
them unchanged.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Optional, Union

import numpy as np

from hmr_ros import kernels as K

from .backends import select_backend
from .errors import EngineError
from .placement import choose_placement

PARAM_MODELS = ("ochmr", "imphmr", "dpmesh")
#: the graph that returns the parameters (the last of a chain)
STAGE = "regressor"
#: what that graph returns
OUTPUTS = ("rotmats", "betas", "cam")
#: the manifest's name for crop-normalised COCO-17 keypoints as an input
KEYPOINT_INPUT = "coco17_crop_normalised"


class ParamRegressorRunner:
    """An exported OCHMR / ImpHMR / DPMesh on any backend (``select_backend`` names), with a body
    model. Runs on the host (NumPy in, NumPy out) whatever the backend."""

    def __init__(self, model_dir: Union[str, Path], body, backend: str = "auto",
                 posedirs_dtype=np.float32, **backend_options):
        self.model_dir = Path(model_dir)
        self.backend = select_backend(backend, self.model_dir, **backend_options)
        self.manifest = self.backend.manifest
        if self.manifest.model not in PARAM_MODELS or STAGE not in self.manifest.stages:
            raise EngineError(f"{self.model_dir}: a '{self.manifest.model}' export with stages "
                              f"{sorted(self.manifest.stages)}, not an SMPL-parameter regressor "
                              f"({', '.join(PARAM_MODELS)} with a '{STAGE}' graph)")
        expected_v = self.manifest.body.get("num_vertices")
        if expected_v is not None and expected_v != body.num_vertices:
            raise EngineError(f"{self.model_dir}: exported for a body with {expected_v} vertices "
                              f"({self.manifest.body.get('name')}), got one with "
                              f"{body.num_vertices} ({getattr(body, 'name', '?')})")
        self.crop_size = int(self.manifest.preprocessing["crop_size"])
        context = self.manifest.heads.get("context")
        #: OCHMR: (channels, size, sigma) of the centre maps its graph takes, else None
        self.context = None if not context else (int(context["channels"]), int(context["size"]),
                                                 float(context["sigma"]))
        self.takes_context = self.context is not None
        self.takes_keypoints = self.manifest.heads.get("keypoint_input") == KEYPOINT_INPUT
        self.chain = tuple(self.manifest.heads.get("chain") or (STAGE,))
        unknown = [s for s in self.chain if s not in self.manifest.stages]
        if unknown or self.chain[-1] != STAGE:
            raise EngineError(f"{self.model_dir}: heads.chain {list(self.chain)} must name "
                              f"stages of the manifest ({sorted(self.manifest.stages)}) and end "
                              f"with '{STAGE}'")
        self.lbs_model = K.LbsModel.from_body(body, posedirs_dtype=posedirs_dtype)
        self.placement = choose_placement(self.backend, False)
        self._lock = threading.Lock()

    @property
    def device_resident(self) -> bool:
        return False

    def default_z(self, batch: int, seed: int = 0) -> np.ndarray:
        """No sampled hypotheses: an empty noise array keeps the pipeline's call uniform."""
        return np.zeros((batch, 0), np.float32)

    def lbs(self, betas: np.ndarray, rel_rotmats: np.ndarray):
        return self.lbs_model(betas, rel_rotmats)

    def __call__(self, crops, z: Optional[np.ndarray] = None, mode: str = "ks_matched",
                 keypoints: Optional[np.ndarray] = None,
                 context: Optional[np.ndarray] = None) -> dict:
        """Crops (B x 3 x c x c float32) [+ context (B x C x s x s)] [+ keypoints (B x 17 x 3)]
        -> ``rel_rotmats``, ``betas``, ``cam``, ``vertices``, ``joints``, ``omega`` (NaN),
        ``best`` (-1), and per-stage ``timing``. ``z`` and ``mode`` are VisHMR's and ignored;
        ``context`` / ``keypoints`` are read only by models that take them."""
        c = self.crop_size
        crops = np.ascontiguousarray(crops, dtype=np.float32)
        if crops.ndim != 4 or crops.shape[1:] != (3, c, c):
            raise EngineError(f"crops must have shape (B, 3, {c}, {c}), got {crops.shape}")
        B = crops.shape[0]
        feeds = {"images": crops}
        if self.takes_context:
            ch, size, _ = self.context
            if context is None:
                raise EngineError(f"{self.manifest.model} needs context maps (B, {ch}, {size}, "
                                  f"{size}): build them with hmr_ros.runtime.context.centre_maps")
            context = np.ascontiguousarray(context, dtype=np.float32)
            if context.shape != (B, ch, size, size):
                raise EngineError(f"context must have shape ({B}, {ch}, {size}, {size}), got "
                                  f"{context.shape}")
            feeds["context"] = context
        if self.takes_keypoints:
            if keypoints is None:
                raise EngineError(f"{self.manifest.model} needs keypoints (B, 17, 3): COCO-17 "
                                  "crop-normalised, see hmr_ros.runtime.pipeline.crop_keypoints")
            keypoints = np.ascontiguousarray(keypoints, dtype=np.float32)
            if keypoints.shape != (B, 17, 3):
                raise EngineError(f"keypoints must have shape ({B}, 17, 3), got "
                                  f"{keypoints.shape}")
            feeds["keypoints"] = np.nan_to_num(keypoints, nan=0.0, posinf=0.0, neginf=0.0)
        timing = {s: 0.0 for s in self.chain}
        with self._lock:
            limit = getattr(self.backend, "max_batch", None) or max(B, 1)
            parts = [self._run_chain({k: v[i:i + limit] for k, v in feeds.items()}, timing)
                     for i in range(0, B, limit)] if B else []
            out = ({k: np.concatenate([np.asarray(p[k], np.float32) for p in parts])
                    for k in OUTPUTS} if parts else
                   {"rotmats": np.zeros((0, 24, 3, 3), np.float32),
                    "betas": np.zeros((0, 10), np.float32), "cam": np.zeros((0, 3), np.float32)})
            t1 = time.perf_counter()
            rel = np.ascontiguousarray(out["rotmats"])
            betas = np.ascontiguousarray(out["betas"])
            vertices, joints = self.lbs_model(betas, rel)
            timing["lbs"] = time.perf_counter() - t1
        return {"rel_rotmats": rel, "betas": betas, "cam": out["cam"],
                "vertices": np.asarray(vertices), "joints": np.asarray(joints),
                "omega": np.full((B, 24), np.nan, np.float32),
                "best": np.full(B, -1, np.int64), "match_scores": None, "timing": timing}

    def _run_chain(self, feeds: dict, timing: dict) -> dict:
        """The manifest's graphs in order, each fed by name from the inputs and the earlier
        graphs' outputs; the last graph's outputs."""
        pool = dict(feeds)
        for stage in self.chain:
            names = self.backend.input_names(stage)
            missing = [n for n in names if n not in pool]
            if missing:
                raise EngineError(f"{self.model_dir}: graph '{stage}' takes {missing}, which "
                                  f"neither the inputs nor the graphs before it provide")
            t = time.perf_counter()
            out = self.backend.run(stage, {n: pool[n] for n in names})
            timing[stage] += time.perf_counter() - t
            pool.update(out)
        return out


def open_regressor(model_dir: Union[str, Path], body, backend: str = "auto", **options):
    """The runner for whatever ``model_dir`` holds (its manifest's ``model``): `VisHMRRunner`
    for VisHMR, `ParamRegressorRunner` for OCHMR / ImpHMR / DPMesh, `BottomUpRunner` for
    InstanceHMR."""
    from .backends.ort import load_manifest
    from .bottom_up import BOTTOM_UP_MODELS, BottomUpRunner
    from .vishmr import VisHMRRunner

    manifest = load_manifest(model_dir)  # verified once, handed to the backend
    if manifest.model in BOTTOM_UP_MODELS:
        return BottomUpRunner(model_dir, body, backend=backend, manifest=manifest, **options)
    if manifest.model in PARAM_MODELS:
        options.pop("device_resident", None)
        return ParamRegressorRunner(model_dir, body, backend=backend, manifest=manifest,
                                    **options)
    if manifest.model != "vishmr":
        raise EngineError(f"{model_dir}: unknown model '{manifest.model}' (known: vishmr, "
                          f"{', '.join(PARAM_MODELS + BOTTOM_UP_MODELS)})")
    return VisHMRRunner(model_dir, body, backend=backend, manifest=manifest, **options)
