"""Frames per second of the frame pipeline (ONNX Runtime stages + compiled kernels) against
the same torch model run eagerly, in one run, for 1 and 5 persons per frame.

    python benchmarks/bench_pipeline.py [--model-dir models/vishmr_light] [--threads 2]
    python benchmarks/bench_pipeline.py --device cuda     # on a GPU machine

On ``--device cuda`` the pipeline runs the stage graphs with the torch backend on the GPU (or
``--backend tensorrt`` where TensorRT is installed) and keeps everything device-resident: crops
cut on the GPU, the CUDA kernels on the backend's stream, one download per frame; the baseline is
the same torch model run eagerly on the GPU.

The eager baseline is the exported model's architecture (``manifest.json``'s config) in torch,
doing the same work per frame: crop (same code), ``VisHMR.forward`` (stages, torch warp, torch
merge, torch LBS) and the full-frame translation. Latency does not depend on weight values, so
the baseline's weights are freshly initialised. Prints per-stage breakdowns and the ratio.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model-dir", default=str(Path(__file__).resolve().parents[1] / "models"
                                               / "vishmr_light"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--frames", type=int, default=20)
    ap.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    ap.add_argument("--backend", default=None,
                    help="pipeline backend (default: onnxruntime on cpu, torch on cuda)")
    args = ap.parse_args(argv)
    import torch

    from hmr_ros.body import procedural_body
    from hmr_ros.models import VisHMR, VisHMRConfig
    from hmr_ros.runtime import Box, FramePipeline, PipelineParams, VisHMRRunner
    from hmr_ros.runtime.camera import crop_to_full_translation, resolve_intrinsics
    from hmr_ros.runtime.crop import crop_batch, square_geometry

    torch.set_num_threads(args.threads)
    body = procedural_body()
    cuda = args.device == "cuda"
    if cuda and not torch.cuda.is_available():
        print("--device cuda: this torch has no CUDA device", file=sys.stderr)
        return 1
    from hmr_ros.export.manifest import Manifest

    config = VisHMRConfig(**Manifest.load(args.model_dir).config)
    model = VisHMR(config, body).eval().to(args.device)
    backend = args.backend or ("torch" if cuda else "onnxruntime")
    opts = {"threads": args.threads}
    if backend == "torch":
        opts.update(model=VisHMR(config, body).eval(), device=args.device)
    runner = VisHMRRunner(args.model_dir, body, backend=backend, **opts)
    prep = runner.manifest.preprocessing
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (480, 640, 3), dtype=np.uint8)
    print(f"model {args.model_dir} ({runner.manifest.config['backbone']}, crop "
          f"{runner.crop_size}, K={runner.num_hypotheses}); {args.threads} threads; "
          f"640x480 frames; {args.device}: pipeline on {runner.backend.name} "
          f"({'device-resident' if runner.device_resident else 'host between stages'})")
    for persons in (1, 5):
        boxes = [Box(20 + 120 * i, 60, 130 + 120 * i, 420) for i in range(persons)]
        pipe = FramePipeline(runner, PipelineParams(max_persons=5, track=False))

        def eager():
            geoms = [square_geometry(b, runner.crop_size, 1.2) for b in boxes]
            crops = torch.from_numpy(crop_batch(image, geoms, prep["mean"], prep["std"]))
            with torch.no_grad():
                out = model(crops.to(args.device),
                            z=torch.from_numpy(runner.default_z(persons)).to(args.device))
                vertices = out["vertices"].cpu().numpy()  # the results reach the host
            intr = resolve_intrinsics(None, 640, 480)
            crop_to_full_translation(out["cam"].cpu().numpy(),
                                     np.array([[g.cx, g.cy] for g in geoms]),
                                     np.array([g.size for g in geoms]), intr)
            return vertices

        stage_times, pipe_ms, eager_ms = {}, [], []
        pipe.process(image, boxes=boxes), eager()  # warm-up
        for _ in range(args.frames):  # alternate so machine load hits both alike
            t = time.perf_counter()
            res = pipe.process(image, boxes=boxes)
            pipe_ms.append((time.perf_counter() - t) * 1e3)
            for k, v in res.timing.items():
                stage_times.setdefault(k, []).append(v * 1e3)
            t = time.perf_counter()
            eager()
            eager_ms.append((time.perf_counter() - t) * 1e3)
        p, e = statistics.median(pipe_ms), statistics.median(eager_ms)
        order = ["preprocess", "upload", "stage_a", "iuv_warp", "stage_b", "merge_lbs", "download", "postprocess"]
        parts = ", ".join(f"{k} {statistics.median(stage_times[k]):.1f}" for k in order
                          if k in stage_times)
        print(f"{persons} person(s): pipeline {p:7.1f} ms ({1000 / p:5.1f} FPS) [{parts}]   "
              f"eager torch {e:7.1f} ms ({1000 / e:5.1f} FPS)   speed-up {e / p:4.2f}x "
              f"(target >= 2x: {'met' if e / p >= 2 else 'NOT met'})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
