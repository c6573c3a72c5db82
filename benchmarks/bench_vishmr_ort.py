"""ONNX Runtime CPU latency of VisHMR's exported stages (A: backbone + IUV; B: heads + flow).

    python benchmarks/bench_vishmr_ort.py [--threads 2] [--backbones resnet18,resnet50]

Builds each configuration with random weights (latency does not depend on the values), exports
it with ``export_vishmr`` into a temporary folder, and times ``stage_a`` and ``stage_b`` with
ONNX Runtime at batch 1 and 8 (median of repeated runs), next to the compiled kernels that run
between them (IUV warp) and after them (match + slerp + LBS).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from timing import median_ms  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--backbones", default="resnet18,resnet50")
    ap.add_argument("--crop", type=int, default=224)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args(argv)
    import torch

    from hmr_ros import kernels as K
    from hmr_ros.body import procedural_body
    from hmr_ros.export import export_vishmr
    from hmr_ros.models import VisHMR, VisHMRConfig
    from hmr_ros.runtime import OrtVisHMR

    torch.set_num_threads(args.threads)
    body = procedural_body()
    print(f"ONNX Runtime CPU, {args.threads} threads, crop {args.crop}x{args.crop}")
    print(f"{'backbone':<10} {'batch':>5} {'stage A ms':>11} {'warp ms':>8} {'stage B ms':>11} "
          f"{'merge+LBS ms':>13} {'total ms':>9} {'crops/s':>8}")
    for name in args.backbones.split(","):
        torch.manual_seed(0)
        model = VisHMR(VisHMRConfig(backbone=name, crop_size=args.crop), body)
        with tempfile.TemporaryDirectory() as tmp:
            export_vishmr(model, tmp)
            runner = OrtVisHMR(tmp, body, threads=args.threads)
            for batch in (1, 8):
                crops = np.random.default_rng(0).normal(size=(batch, 3, args.crop, args.crop)).astype(np.float32)
                z = runner.default_z(batch)
                sa, sb = runner.sessions["stage_a"], runner.sessions["stage_b"]
                feats, iuv, pooled = sa.run(None, {"images": crops})
                uv = K.iuv_warp(feats, iuv, runner.atlas_size, runner.fg_threshold)
                names = [o.name for o in sb.get_outputs()]
                out_b = dict(zip(names, sb.run(None, {"uv_features": uv, "pooled": pooled, "z": z})))
                from hmr_ros.runtime import merge

                n = max(2, args.repeats if batch == 1 else args.repeats // 2)
                ta = median_ms(lambda: sa.run(None, {"images": crops}), n, warmup=True)
                tw = median_ms(lambda: K.iuv_warp(feats, iuv, runner.atlas_size, runner.fg_threshold), n, warmup=True)
                tb = median_ms(lambda: sb.run(None, {"uv_features": uv, "pooled": pooled, "z": z}), n, warmup=True)
                tm = median_ms(lambda: merge(out_b, runner.lbs_model), n, warmup=True)
                total = ta + tw + tb + tm
                print(f"{name:<10} {batch:>5} {ta:>11.1f} {tw:>8.2f} {tb:>11.1f} {tm:>13.2f} "
                      f"{total:>9.1f} {batch * 1000 / total:>8.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
