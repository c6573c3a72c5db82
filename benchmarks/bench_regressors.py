"""CPU latency of the five regressors, same run, ONNX Runtime + the compiled kernels (what the
pipeline calls). Two tables:

* per crop, batch 1 and 8: VisHMR (the bundled model), OCHMR, ImpHMR and DPMesh (top-down; DPMesh
  at its own crop size, with keypoints);
* per frame (640 x 480): the top-down VisHMR with 1 and 5 people (crops cut and regressed in one
  batch) against InstanceHMR, which reads the whole frame once whatever the number of people
  (letterbox, maps graph, centre-peak kernel, decode graph, LBS).

    python benchmarks/bench_regressors.py [--threads 2] [--repeats 20] [--ochmr-dir DIR]
        [--imphmr-dir DIR] [--dpmesh-dir DIR] [--instancehmr-dir DIR]

Without a ``--*-dir`` the model's light configuration (``configs/ochmr_light.yaml``,
``configs/imphmr_light.yaml``: EfficientNet-Lite0 at the bundled VisHMR's crop size;
``configs/dpmesh_tiny.yaml``; ``configs/instancehmr_light.yaml``) is exported with freshly
initialised weights into a temporary folder: latency does not depend on the weights, and nothing
here is an accuracy number. Ratios are against VisHMR in the same run.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _light_export(name: str, out: Path, body, crop: int) -> Path:
    """A light OCHMR / ImpHMR exported with initial weights (latency only)."""
    import torch

    from hmr_ros.export import export_param_regressor

    torch.manual_seed(0)
    if name == "ochmr":
        from hmr_ros.models.ochmr import OCHMR, OCHMRConfig

        model = OCHMR(OCHMRConfig(backbone="efficientnet_lite0", crop_size=crop))
        cfg = model.config
        context = {"channels": 2, "size": cfg.centre_map_size, "sigma": cfg.centre_sigma}
        export_param_regressor(model.eval(), out, name="ochmr", body=body, context=context,
                               check_tensorrt=False)
    elif name == "imphmr":
        from hmr_ros.models import imphmr

        model = imphmr.ImpHMR(imphmr.ImpHMRConfig(backbone="efficientnet_lite0", crop_size=crop))
        export_param_regressor(model.eval(), out, name="imphmr", body=body,
                               module=imphmr.ImpHMRExport(model.eval()), check_tensorrt=False)
    elif name == "dpmesh":
        from hmr_ros.export.dpmesh_export import export_dpmesh
        from hmr_ros.train.dpmesh import load_dpmesh_train_config

        cfg = load_dpmesh_train_config(ROOT / "configs" / "dpmesh_tiny.yaml").model
        from hmr_ros.models.dpmesh import DPMesh

        export_dpmesh(DPMesh(cfg).eval(), out, body=body, check_tensorrt=False)
    else:
        from hmr_ros.export.instancehmr_export import export_instancehmr
        from hmr_ros.models.instancehmr import InstanceHMR
        from hmr_ros.train.instancehmr import load_instancehmr_config

        cfg = load_instancehmr_config(ROOT / "configs" / "instancehmr_light.yaml").model
        export_instancehmr(InstanceHMR(cfg).eval(), out, body=body, check_tensorrt=False)
    return out


def _time(runner, batch: int, repeats: int, crop: int):
    import numpy as np

    rng = np.random.default_rng(0)
    crops = rng.uniform(-2, 2, (batch, 3, crop, crop)).astype(np.float32)
    kwargs = {}
    if getattr(runner, "takes_context", False):
        _, size, _ = runner.context
        kwargs["context"] = rng.uniform(0, 1, (batch, 2, size, size)).astype(np.float32)
    if getattr(runner, "takes_keypoints", False):
        kwargs["keypoints"] = np.zeros((batch, 17, 3), np.float32)
    z = runner.default_z(batch)
    for _ in range(3):
        runner(crops, z, **kwargs)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        runner(crops, z, **kwargs)
        times.append(time.perf_counter() - t)
    times.sort()
    return 1e3 * times[len(times) // 2] / batch


def _time_frame(call, repeats: int) -> float:
    """Median ms of ``call()`` after 3 warm-up calls."""
    for _ in range(3):
        call()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        call()
        times.append(time.perf_counter() - t)
    times.sort()
    return 1e3 * times[len(times) // 2]


def _frame_table(vishmr, instancehmr, label: str, repeats: int) -> None:
    """Per-frame latency: top-down VisHMR with 1 and 5 people against bottom-up InstanceHMR."""
    import numpy as np

    from hmr_ros.runtime import Box, FramePipeline, Header, PipelineParams

    frame = np.random.default_rng(0).integers(0, 255, (480, 640, 3), np.uint8)
    boxes = [Box(40 + 110 * i, 60, 140 + 110 * i, 420, score=0.9) for i in range(5)]
    top_down = FramePipeline(vishmr, PipelineParams(max_persons=5, track=False))
    bottom_up = FramePipeline(instancehmr, PipelineParams(max_persons=5, track=False))
    rows = [("vishmr, 1 person", _time_frame(
                lambda: top_down.process(frame, None, boxes[:1], Header()), repeats)),
            ("vishmr, 5 people", _time_frame(
                lambda: top_down.process(frame, None, boxes, Header()), repeats)),
            ("instancehmr, any number", _time_frame(
                lambda: bottom_up.process(frame, None, None, Header()), repeats))]
    print(f"\nper frame 640x480 (ms, median of {repeats}; boxes given to VisHMR, no detector; "
          f"ratio = row / VisHMR with 1 person); {label}")
    for name, ms in rows:
        print(f"{name:<44} {ms:>9.2f} {ms / rows[0][1]:>6.2f}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--vishmr-dir", default=None, help="default: the bundled model")
    ap.add_argument("--ochmr-dir", default=None)
    ap.add_argument("--imphmr-dir", default=None)
    ap.add_argument("--dpmesh-dir", default=None)
    ap.add_argument("--instancehmr-dir", default=None)
    args = ap.parse_args(argv)
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ.setdefault(var, str(args.threads))

    from hmr_ros.body import load_body_model
    from hmr_ros.node.params import default_model_dir
    from hmr_ros.runtime import open_regressor

    body = load_body_model("procedural")
    vishmr_dir = args.vishmr_dir or default_model_dir()
    vishmr = open_regressor(vishmr_dir, body, backend="onnxruntime", threads=args.threads)
    crop = vishmr.crop_size
    rows = [("vishmr", Path(vishmr_dir).name, vishmr)]
    with tempfile.TemporaryDirectory() as tmp:
        for name, given in (("ochmr", args.ochmr_dir), ("imphmr", args.imphmr_dir),
                            ("dpmesh", args.dpmesh_dir)):
            try:
                folder = Path(given) if given else _light_export(name, Path(tmp) / name, body,
                                                                 crop)
            except ImportError as exc:  # a model not in this checkout
                print(f"{name}: skipped ({exc})")
                continue
            label = folder.name if given else "light config, initial weights"
            rows.append((name, label, open_regressor(folder, body, backend="onnxruntime",
                                                     threads=args.threads)))
        results = {name: {b: _time(r, b, args.repeats, r.crop_size) for b in (1, 8)}
                   for name, _, r in rows}
        print(f"CPU latency per crop (ms, median of {args.repeats}), ONNX Runtime, "
              f"{args.threads} threads; ratio = model / VisHMR, same run")
        print(f"{'model':<8} {'weights':<32} {'crop':>5} {'batch 1':>9} {'ratio':>6} "
              f"{'batch 8':>9} {'ratio':>6}")
        base = results["vishmr"]
        for name, label, r in rows:
            t = results[name]
            print(f"{name:<8} {label[:32]:<32} {r.crop_size:>5} {t[1]:>9.2f} "
                  f"{t[1] / base[1]:>6.2f} {t[8]:>9.2f} {t[8] / base[8]:>6.2f}")
        given = args.instancehmr_dir
        try:
            folder = Path(given) if given else _light_export("instancehmr",
                                                             Path(tmp) / "instancehmr", body,
                                                             crop)
        except ImportError as exc:
            print(f"instancehmr: skipped ({exc})")
            return 0
        bottom_up = open_regressor(folder, body, backend="onnxruntime", threads=args.threads)
        _frame_table(vishmr, bottom_up,
                     f"instancehmr {bottom_up.input_size} px, "
                     + (folder.name if given else "light config, initial weights"),
                     args.repeats)
    return 0


if __name__ == "__main__":
    sys.exit(main())
