"""Bottom-up regressors at run time (InstanceHMR): the whole frame in, every person out.

No person detector: the frame is letterboxed into the model's square input (a square "crop" of
side max(W, H) centred on the frame, black outside), the ``maps`` graph returns a body-centre
heatmap and an SMPL parameter map, the centre peaks (NMS kernel, `hmr_ros.kernels.centre_peaks`)
say where people are, and the ``decode`` graph reads the parameter vectors at those pixels
(``index``, -1 for an empty slot) and turns them into rotations, shape and a weak-perspective
camera of the letterboxed square -- the same crop camera the top-down models predict, so
`FramePipeline` maps it to the frame with the letterbox as the crop. Boxes for the tracker come
from each body's projected mesh.
"""

from __future__ import annotations

import threading
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
    """An exported InstanceHMR on any backend, with a body model: a host frame in, host arrays
    out; in between the data stays on the GPU when the placement is device-resident."""

    bottom_up = True
    takes_keypoints = False
    takes_context = False

    def __init__(self, model_dir: Union[str, Path], body, backend: str = "auto",
                 posedirs_dtype=np.float32, device_resident="auto", **backend_options):
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
        self.placement = choose_placement(self.backend, device_resident)
        if hasattr(self.backend, "outputs_on_device"):
            self.backend.outputs_on_device = self.placement.device_resident
        self._lock = threading.Lock()

    @property
    def device_resident(self) -> bool:
        return self.placement.device_resident

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
        letterbox) and per-stage ``timing``.

        On a device-resident placement (TensorRT) the letterbox, both graphs, the peak kernel,
        the gather (inside ``decode``) and LBS run on the GPU; the host sees the K slots once."""
        height, width = image.shape[:2]
        geom = self.letterbox(width, height)
        spec = self.centres
        # the decode graph has max_people slots; fewer wanted = the best of them
        wanted = min(int(max_people or spec.max_people), spec.max_people)
        put = self.placement
        with self._lock, put.scope():
            clock = put.stopwatch()
            x = crop_batch(image, [geom], self.mean, self.std, put)
            clock.lap("letterbox")
            maps = {k: put.adopt(v) for k, v in self.backend.run(MAPS, {"images": x}).items()}
            clock.lap(MAPS)
            peaks = K.centre_peaks(maps["centre_heatmap"], threshold=spec.threshold
                                   if threshold is None else float(threshold),
                                   max_peaks=spec.max_people, window=spec.window)
            clock.lap("centres")
            # every slot is decoded (unused ones read pixel 0): K is small, and the number of
            # people need not reach the host before the end of the frame
            out = {k: put.adopt(v) for k, v in self.backend.run(
                DECODE, {"param_map": maps["param_map"], "index": peaks.index}).items()}
            clock.lap(DECODE)
            # one image: its K slots. On the host the count is known already, so only the
            # people found are posed; on the GPU every slot is, and the count arrives with them
            slots = (spec.max_people if put.device_resident else
                     min(int(np.asarray(peaks.count)[0]), wanted))
            rotmats = out["rotmats"].reshape(spec.max_people, 24, 3, 3)[:slots]
            betas = out["betas"].reshape(spec.max_people, 10)[:slots]
            vertices, joints = self.lbs_model(betas, rotmats)
            clock.lap("lbs")
            host = put.download({"rotmats": rotmats, "betas": betas,
                                 "cam": out["cam"].reshape(spec.max_people, 3)[:slots],
                                 "vertices": vertices, "joints": joints,
                                 "count": peaks.count, "scores": peaks.scores, "xy": peaks.xy})
            clock.lap("download")
        timing = clock.result()
        if not put.device_resident:
            timing.pop("download", None)
        n = min(int(np.asarray(host["count"])[0]), wanted)
        rel = np.ascontiguousarray(np.asarray(host["rotmats"], np.float32)[:n])
        hxy = np.asarray(host["xy"], np.float64)[0, :n]
        # heatmap pixel -> input pixel (pixel centres at integers) -> frame pixel
        inp = (hxy + 0.5) * spec.stride - 0.5
        affine = geom.crop_to_image()
        return {"rel_rotmats": rel,
                "betas": np.ascontiguousarray(np.asarray(host["betas"], np.float32)[:n]),
                "cam": np.asarray(host["cam"], np.float32)[:n],
                "vertices": np.asarray(host["vertices"], np.float32)[:n],
                "joints": np.asarray(host["joints"], np.float32)[:n],
                "omega": np.full((n, 24), np.nan, np.float32), "best": np.full(n, -1, np.int64),
                "match_scores": None,
                "scores": np.asarray(host["scores"], np.float32)[0, :n],
                "centres": inp @ affine[:, :2].T + affine[:, 2], "geometry": geom,
                "timing": timing}
