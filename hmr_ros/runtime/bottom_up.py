"""Bottom-up regressors at run time (InstanceHMR): the whole frame in, every person out.

No person detector: the frame is letterboxed into the model's square input (a square "crop" of
side max(W, H) centred on the frame, black outside), the ``maps`` graph returns a body-centre
heatmap and an SMPL parameter map, the centre peaks (NMS kernel, `hmr_ros.kernels.centre_peaks`)
say where people are, their parameter vectors are read at those pixels, and the ``decode`` graph
turns them into rotations, shape and a weak-perspective camera of the letterboxed square -- the
same crop camera the top-down models predict, so `FramePipeline` maps it to the frame with the
letterbox as the crop. Boxes for the tracker come from each body's projected mesh.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Union

import numpy as np

from hmr_ros import kernels as K

from .backends import select_backend
from .crop import CropGeometry, crop_batch
from .errors import EngineError
from .placement import choose_placement

BOTTOM_UP_MODELS = ("instancehmr",)
MAPS, DECODE = "maps", "decode"


@dataclass(frozen=True)
class CentreSpec:
    """How centres are read off the heatmap (the manifest's ``heads.centres``)."""

    stride: int  # input pixels per heatmap pixel
    threshold: float  # a centre's heatmap probability must reach this
    window: int  # NMS: a centre is the maximum of its window x window neighbourhood
    max_people: int


class BottomUpRunner:
    """An exported InstanceHMR on any backend, with a body model. Host arrays in and out."""

    bottom_up = True
    takes_keypoints = False
    takes_context = False

    def __init__(self, model_dir: Union[str, Path], body, backend: str = "auto",
                 posedirs_dtype=np.float32, **backend_options):
        self.model_dir = Path(model_dir)
        self.backend = select_backend(backend, self.model_dir, **backend_options)
        self.manifest = self.backend.manifest
        if self.manifest.model not in BOTTOM_UP_MODELS or not {MAPS, DECODE} <= set(
                self.manifest.stages):
            raise EngineError(f"{self.model_dir}: a '{self.manifest.model}' export with stages "
                              f"{sorted(self.manifest.stages)}, not a bottom-up model "
                              f"({', '.join(BOTTOM_UP_MODELS)} with '{MAPS}' and '{DECODE}')")
        expected_v = self.manifest.body.get("num_vertices")
        if expected_v is not None and expected_v != body.num_vertices:
            raise EngineError(f"{self.model_dir}: exported for a body with {expected_v} vertices "
                              f"({self.manifest.body.get('name')}), got one with "
                              f"{body.num_vertices} ({getattr(body, 'name', '?')})")
        prep = self.manifest.preprocessing
        self.input_size = int(prep.get("input_size", prep["crop_size"]))
        self.mean, self.std = prep["mean"], prep["std"]
        c = self.manifest.heads.get("centres") or {}
        try:
            self.centres = CentreSpec(stride=int(c["stride"]), threshold=float(c["threshold"]),
                                      window=int(c.get("window", 3)),
                                      max_people=int(c.get("max_people", 16)))
        except (KeyError, TypeError, ValueError) as exc:
            raise EngineError(f"{self.model_dir}: manifest heads.centres {c!r} lacks stride / "
                              f"threshold ({exc})") from None
        self.lbs_model = K.LbsModel.from_body(body, posedirs_dtype=posedirs_dtype)
        self.placement = choose_placement(self.backend, False)
        self._lock = threading.Lock()

    @property
    def device_resident(self) -> bool:
        return False

    def default_z(self, batch: int, seed: int = 0) -> np.ndarray:
        """No sampled hypotheses (the pipeline's call stays uniform)."""
        return np.zeros((batch, 0), np.float32)

    def lbs(self, betas: np.ndarray, rel_rotmats: np.ndarray):
        return self.lbs_model(betas, rel_rotmats)

    def letterbox(self, width: int, height: int) -> CropGeometry:
        """The frame as the model sees it: a square of side max(W, H) on the frame's centre."""
        return CropGeometry(0.5 * width, 0.5 * height, float(max(width, height)),
                            self.input_size)

    def find_people(self, image: np.ndarray, max_people: Optional[int] = None,
                    threshold: Optional[float] = None) -> dict:
        """An RGB uint8 frame -> everyone the centre heatmap shows (best first, at most
        ``max_people``): ``rel_rotmats``, ``betas``, ``cam`` (of the letterbox square),
        ``vertices``, ``joints`` (model frame), ``omega`` (NaN: not predicted), ``best`` (-1),
        ``scores`` (centre probabilities), ``centres`` (frame pixels), ``geometry`` (the
        letterbox) and per-stage ``timing``."""
        height, width = image.shape[:2]
        geom = self.letterbox(width, height)
        spec = self.centres
        limit = min(int(max_people or spec.max_people), 256)
        timing = {}
        with self._lock:
            t0 = time.perf_counter()
            x = crop_batch(image, [geom], self.mean, self.std)
            t1 = time.perf_counter()
            timing["letterbox"] = t1 - t0
            maps = self.backend.run(MAPS, {"images": x})
            t2 = time.perf_counter()
            timing[MAPS] = t2 - t1
            heat = np.ascontiguousarray(maps["centre_heatmap"], np.float32)
            pmap = np.asarray(maps["param_map"], np.float32)
            peaks = K.centre_peaks(heat, threshold=spec.threshold if threshold is None
                                   else float(threshold), max_peaks=limit, window=spec.window)
            n = int(peaks.count[0])
            index = np.asarray(peaks.index[0, :n], np.int64)
            scores = np.asarray(peaks.scores[0, :n], np.float32)
            hxy = np.asarray(peaks.xy[0, :n], np.float64)
            t3 = time.perf_counter()
            timing["centres"] = t3 - t2
            vectors = np.ascontiguousarray(pmap[0].reshape(pmap.shape[1], -1)[:, index].T)
            if n:
                out = self.backend.run(DECODE, {"params": vectors})
                rel = np.ascontiguousarray(out["rotmats"], np.float32)
                betas = np.ascontiguousarray(out["betas"], np.float32)
                cam = np.asarray(out["cam"], np.float32)
            else:
                rel = np.zeros((0, 24, 3, 3), np.float32)
                betas = np.zeros((0, 10), np.float32)
                cam = np.zeros((0, 3), np.float32)
            t4 = time.perf_counter()
            timing[DECODE] = t4 - t3
            vertices, joints = self.lbs_model(betas, rel)
            timing["lbs"] = time.perf_counter() - t4
        # heatmap pixel -> input pixel (pixel centres at integers) -> frame pixel
        inp = (hxy + 0.5) * spec.stride - 0.5
        centres = inp @ geom.crop_to_image()[:, :2].T + geom.crop_to_image()[:, 2]
        return {"rel_rotmats": rel, "betas": betas, "cam": cam,
                "vertices": np.asarray(vertices), "joints": np.asarray(joints),
                "omega": np.full((n, 24), np.nan, np.float32), "best": np.full(n, -1, np.int64),
                "match_scores": None, "scores": scores, "centres": centres, "geometry": geom,
                "timing": timing}
