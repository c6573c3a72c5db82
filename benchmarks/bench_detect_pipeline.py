"""Frames per second of the whole per-frame path -- person detector, keypoint model, regressor
-- on ONNX Runtime, against the same networks run eagerly in torch, in one run.

    python benchmarks/bench_detect_pipeline.py [--model-dir models/vishmr_kp_light] [--threads 2]
    python benchmarks/bench_detect_pipeline.py --video ~/.cache/hmr_ros/footage/vtest.avi --tile 320

The frame (default): three people side by side, scikit-image's astronaut photograph (NASA,
public domain) and its mirror image, 1536 x 512 scaled to 960 x 320. Tracking is on, as in the
node: the detector runs every ``--detect-every`` frames, the landmark model every frame on the
tracked regions. The eager baseline runs the very same code with every network swapped for its
torch module: BlazePose's graphs rebuilt from the original .tflite (``hmr_ros.detect.
tflite_graph``, what the ONNX files are exported from) and VisHMR in torch (stages, torch warp,
torch merge, torch LBS); the eager landmark module is the whole converted graph, segmentation
branch included (the ONNX path runs it cut before that branch: part of the ratio is that cut). Both alternate frame by frame so machine load hits both alike.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


class _TorchStages:
    """The detector's two stages as eager torch modules behind the backend interface."""

    name = "torch-eager"

    def __init__(self, modules, names):
        self.modules, self.names = modules, names

    @property
    def stages(self):
        return tuple(self.modules)

    def run(self, stage, feeds):
        import torch

        with torch.no_grad():
            outs = self.modules[stage](torch.from_numpy(np.ascontiguousarray(feeds["image"])))
        return {n: o.numpy() for n, o in zip(self.names[stage], outs)}


class _EagerVisHMR:
    """VisHMR in torch with the runner's call signature (crops, z, mode, keypoints)."""

    def __init__(self, model, runner):
        self.model, self.runner = model, runner
        self.manifest = runner.manifest
        self.takes_keypoints = runner.takes_keypoints
        self.placement = None

    def default_z(self, batch, seed=0):
        return self.runner.default_z(batch, seed)

    def lbs(self, betas, rel):
        return self.runner.lbs(betas, rel)

    def __call__(self, crops, z, mode="ks_matched", keypoints=None):
        import torch

        with torch.no_grad():
            out = self.model(torch.from_numpy(crops), torch.from_numpy(z), mode=mode,
                             keypoints=None if keypoints is None else torch.from_numpy(keypoints))
        return {k: v.numpy() for k, v in out.items() if k in (
            "rel_rotmats", "betas", "cam", "vertices", "joints", "omega", "best")}


def _frames(args):
    if args.video:
        import cv2

        cap = cv2.VideoCapture(args.video)
        frames = []
        while len(frames) < args.frames + 1:
            ok, bgr = cap.read()
            if not ok:
                break
            frames.append(np.ascontiguousarray(bgr[:, :, ::-1]))
        if not frames:
            raise SystemExit(f"{args.video}: no frames")
        return frames
    import cv2
    from skimage import data

    a = data.astronaut()
    three = np.concatenate([a, a[:, ::-1], a], axis=1)
    return [np.ascontiguousarray(cv2.resize(three, (960, 320), interpolation=cv2.INTER_AREA))]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model-dir", default=str(ROOT / "models" / "vishmr_kp_light"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--frames", type=int, default=30)
    ap.add_argument("--video", default=None)
    ap.add_argument("--tile", type=int, default=0)
    ap.add_argument("--detect-every", type=int, default=3)
    ap.add_argument("--refine-iterations", type=int, default=0,
                    help="run-time refinement to the keypoints (the node's default is 5)")
    args = ap.parse_args(argv)
    import torch

    from hmr_ros.body import procedural_body
    from hmr_ros.detect import DetectorParams, PoseKeypointDetector
    from hmr_ros.detect.convert import STAGE_IO, source_graph
    from hmr_ros.detect.tflite_graph import load_tflite
    from hmr_ros.export.manifest import Manifest
    from hmr_ros.models import VisHMR, VisHMRConfig
    from hmr_ros.models.checkpoint import load_checkpoint  # noqa: F401  (weights: see below)
    from hmr_ros.runtime import FramePipeline, PipelineParams, VisHMRRunner

    torch.set_num_threads(args.threads)
    body = procedural_body()
    params = DetectorParams(detect_every=args.detect_every, detector_tile=args.tile)
    det = PoseKeypointDetector(backend="onnxruntime", threads=args.threads, params=params)
    runner = VisHMRRunner(args.model_dir, body, backend="onnxruntime", threads=args.threads)
    eager_det = PoseKeypointDetector(backend="onnxruntime", threads=args.threads, params=params)
    sources = {s: source_graph(s) for s in ("detector", "landmarks")}
    if None in sources.values():
        print("the original .tflite graphs are not cached: run `hmr-ros detector fetch --force`")
        return 1
    eager_det.backend = _TorchStages({s: load_tflite(p) for s, p in sources.items()},
                                     {s: STAGE_IO[s][1] for s in sources})
    # latency does not depend on weight values: a freshly initialised VisHMR of the same config
    config = VisHMRConfig(**{**Manifest.load(args.model_dir).config, "pretrained_backbone": None})
    eager = _EagerVisHMR(VisHMR(config, body).eval(), runner)
    pp = PipelineParams(max_persons=5, track=True, refine_iterations=args.refine_iterations)
    pipe = FramePipeline(runner, pp, keypoint_detector=det)
    base = FramePipeline(eager, pp, keypoint_detector=eager_det)
    frames = _frames(args)
    print(f"model {args.model_dir} ({config.backbone}, crop {config.crop_size}, keypoint input "
          f"{runner.takes_keypoints}); {args.threads} threads; frames {frames[0].shape[1]}x"
          f"{frames[0].shape[0]}{' from ' + args.video if args.video else ' (3 people)'}; "
          f"detector every {args.detect_every} frame(s), tile {args.tile}, refinement "
          f"{args.refine_iterations} step(s)")
    pipe.process(frames[0]), base.process(frames[0])  # warm-up
    ort_ms, torch_ms, persons, stages = [], [], [], {}
    for i in range(args.frames):
        frame = frames[(i + 1) % len(frames)]
        t = time.perf_counter()
        res = pipe.process(frame)
        ort_ms.append((time.perf_counter() - t) * 1e3)
        persons.append(len(res.persons))
        for k, v in {**res.timing, **{"det_" + k: v for k, v in det.stats.timing.items()}}.items():
            stages.setdefault(k, []).append(v * 1e3)
        t = time.perf_counter()
        base.process(frame)
        torch_ms.append((time.perf_counter() - t) * 1e3)
    p, e = statistics.median(ort_ms), statistics.median(torch_ms)
    order = ["det_detector", "det_landmarks", "preprocess", "stage_a", "iuv_warp", "stage_b",
             "merge_lbs", "refine", "postprocess"]
    parts = ", ".join(f"{k} {statistics.median(stages[k]):.1f}" for k in order if k in stages)
    print(f"persons per frame: median {statistics.median(persons):.0f} (min {min(persons)}, "
          f"max {max(persons)}); detector runs {det.stats.detector_runs} in "
          f"{det.stats.frames} frames")
    print(f"ONNX Runtime path {p:7.1f} ms ({1000 / p:5.1f} FPS) [{parts}]")
    print(f"eager torch path  {e:7.1f} ms ({1000 / e:5.1f} FPS)   speed-up {e / p:4.2f}x; "
          f"target >= 15 FPS with 3 people: {'met' if 1000 / p >= 15 else 'NOT met'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
