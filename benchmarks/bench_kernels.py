"""Kernel speed against baselines measured in the same run (ratios, not absolute times).

    python benchmarks/bench_kernels.py [--threads 2] [--quick]

Baselines: smplx.lbs (torch CPU, same thread count) for LBS; the differentiable torch twins in
hmr_ros.kernels.torch_ops for kinematic slerp (a per-joint loop, vectorised over the batch) and
IUV warping (index_add_). Each pair is timed in alternating rounds and compared by medians, so
load from other processes hits both sides alike. On a CUDA machine the GPU section times LBS
with CUDA events against smplx.lbs on the same GPU.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from timing import median_ms  # noqa: E402


def compare(name, baseline, ours, n, rounds=5, target=None):
    """Alternating rounds of baseline and ours; prints medians and the speed-up."""
    baseline(), ours()  # warm-up
    b_ms, o_ms = [], []
    for _ in range(rounds):
        b_ms.append(median_ms(baseline, n))
        o_ms.append(median_ms(ours, n))
    b, o = statistics.median(b_ms), statistics.median(o_ms)
    ratio = b / o
    verdict = "" if target is None else (f"  target >= {target:g}x: "
                                         f"{'met' if ratio >= target else 'NOT met'}")
    print(f"{name:<44} baseline {b:9.3f} ms   ours {o:9.3f} ms   speed-up {ratio:6.2f}x{verdict}")
    return ratio


def bench_lbs(torch, smplx_lbs, K, body, label, quick):
    print(f"\n-- LBS on {label} (V={body['v_template'].shape[0]}) vs smplx.lbs --")
    par = body["parents"]
    tb = {k: torch.tensor(v) for k, v in body.items()}
    rng = np.random.default_rng(0)
    from hmr_ros.kernels import torch_ops

    prepared = {dt: K.LbsModel(body["v_template"], body["shapedirs"],
                               body["posedirs"].astype(dt), body["j_regressor"], par,
                               body["weights"]) for dt in (np.float32, np.float16)}
    print(f"prepared model keeps {prepared[np.float32].packed_fraction:.1%} of the blend-shape "
          "rows (all-zero tile rows dropped)")
    for B, target in ((1, 2.0), (64, 8.0)):
        betas = rng.normal(size=(B, 10)).astype(np.float32)
        R = torch_ops.axis_angle_to_matrix(torch.from_numpy(rng.normal(size=(B, 24, 3)) * 0.4)).float()
        Rn = np.ascontiguousarray(R.numpy())
        tbetas = torch.from_numpy(betas)

        def base():
            with torch.no_grad():
                smplx_lbs(tbetas, R, tb["v_template"], tb["shapedirs"], tb["posedirs"],
                          tb["j_regressor"], tb["parents"], tb["weights"], pose2rot=False)

        def ours(pd=body["posedirs"]):
            K.lbs(betas, Rn, body["v_template"], body["shapedirs"], pd, body["j_regressor"], par,
                  body["weights"])

        n = 3 if quick else (30 if B == 1 else 5)
        compare(f"lbs() one-shot B={B}", base, ours, n, target=target)
        pd16 = body["posedirs"].astype(np.float16)
        compare(f"lbs() one-shot B={B}, fp16 posedirs", base, lambda: ours(pd16), n,
                target=target)
        for dtype in (np.float32, np.float16):
            model = prepared[dtype]
            compare(f"LbsModel B={B}, {np.dtype(dtype).name} posedirs", base,
                    lambda: model(betas, Rn), n, target=target)


def bench_slerp(torch, K, quick):
    from hmr_ros.body.constants import PARENTS
    from hmr_ros.kernels import torch_ops

    print("\n-- kinematic_slerp B=64 vs per-joint torch loop (torch_ops) --")
    rng = np.random.default_rng(1)
    B = 64
    abs_vis = torch_ops.axis_angle_to_matrix(torch.from_numpy(rng.normal(size=(B, 24, 3)))).float()
    rel = torch_ops.axis_angle_to_matrix(torch.from_numpy(rng.normal(size=(B, 24, 3)) * 0.3)).float()
    w = torch.from_numpy(rng.uniform(size=(B, 24)).astype(np.float32))
    a, r, wn = (np.ascontiguousarray(x.numpy()) for x in (abs_vis, rel, w))

    def base():
        with torch.no_grad():
            torch_ops.kinematic_slerp(abs_vis, rel, w, PARENTS)

    compare("kinematic_slerp B=64", base, lambda: K.kinematic_slerp(a, r, wn, PARENTS),
            3 if quick else 20, target=50.0)


def bench_warp(torch, K, quick):
    from hmr_ros.kernels import torch_ops

    print("\n-- iuv_warp B=8, C=256, 56x56 -> 64x64 vs torch index_add_ (torch_ops) --")
    rng = np.random.default_rng(2)
    f = rng.normal(size=(8, 256, 56, 56)).astype(np.float32)
    iuv = rng.uniform(size=(8, 3, 56, 56)).astype(np.float32)
    tf, ti = torch.from_numpy(f), torch.from_numpy(iuv)

    def base():
        with torch.no_grad():
            torch_ops.iuv_warp(tf, ti, 64)

    compare("iuv_warp B=8 C=256 56->64", base, lambda: K.iuv_warp(f, iuv, 64),
            3 if quick else 20, target=3.0)


def bench_centres(K, quick):
    from hmr_ros.kernels.centres import centre_peaks_reference

    print("\n-- centre_peaks (1, 1, 128, 128), window 3 vs its NumPy reference --")
    hm = np.random.default_rng(3).random((1, 1, 128, 128)).astype(np.float32)
    compare("centre_peaks 128x128 K=16", lambda: centre_peaks_reference(hm, 0.3, 16, 3),
            lambda: K.centre_peaks(hm, 0.3, 16, 3), 5 if quick else 50)


def bench_gpu(torch, smplx_lbs, K, body):
    print("\n-- GPU: LBS B=64 (CUDA events) --")
    dev = torch.device("cuda")
    tb = {k: torch.from_numpy(v).to(dev) for k, v in body.items()}
    B = 64
    betas = torch.randn(B, 10, device=dev)
    from hmr_ros.kernels import torch_ops

    R = torch_ops.axis_angle_to_matrix(torch.randn(B, 24, 3, device=dev) * 0.4).contiguous()

    def timed(fn, n=200):
        for _ in range(10):
            fn()
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(n):
            fn()
        end.record()
        torch.cuda.synchronize()
        return start.elapsed_time(end) / n * 1e3  # µs

    def ours():
        K.lbs(betas, R, tb["v_template"], tb["shapedirs"], tb["posedirs"], tb["j_regressor"],
              body["parents"], tb["weights"])

    def base():
        with torch.no_grad():
            smplx_lbs(betas, R, tb["v_template"], tb["shapedirs"], tb["posedirs"],
                      tb["j_regressor"], tb["parents"], tb["weights"], pose2rot=False)

    o, b = timed(ours), timed(base)
    print(f"lbs B=64 GPU: ours {o:8.1f} us/call (target < 100 us: {'met' if o < 100 else 'NOT met'})"
          f"   smplx {b:8.1f} us   speed-up {b / o:6.2f}x (target >= 10x)")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2, help="CPU threads for both sides")
    ap.add_argument("--quick", action="store_true", help="few repetitions (smoke run)")
    args = ap.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    import torch
    from smplx.lbs import lbs as smplx_lbs

    from hmr_ros import kernels as K
    from hmr_ros.body import procedural_body

    torch.set_num_threads(args.threads)
    print(f"threads: {args.threads} (torch {torch.__version__}); CUDA kernels compiled: "
          f"{K.cuda_compiled()}, CUDA device: {K.cuda_available()}")
    pb = procedural_body()
    bodies = {
        "the procedural body": dict(v_template=pb.v_template, shapedirs=pb.shapedirs,
                                    posedirs=pb.posedirs, j_regressor=pb.j_regressor,
                                    parents=pb.parents, weights=pb.weights),
    }
    # A dense SMPL-sized model: every posedirs entry and J_regressor entry nonzero, 4 skinning
    # weights per vertex like SMPL.
    rng = np.random.default_rng(0)
    V = 6890
    w = rng.random((V, 24)) ** 4
    w[w < np.sort(w, axis=1)[:, -4:-3]] = 0.0
    jr = rng.random((24, V))
    bodies["a dense SMPL-sized random model"] = dict(
        v_template=rng.normal(size=(V, 3)).astype(np.float32),
        shapedirs=(rng.normal(size=(V, 3, 10)) * 0.01).astype(np.float32),
        posedirs=(rng.normal(size=(207, V * 3)) * 0.01).astype(np.float32),
        j_regressor=(jr / jr.sum(1, keepdims=True)).astype(np.float32),
        parents=pb.parents, weights=(w / w.sum(1, keepdims=True)).astype(np.float32))
    for label, body in bodies.items():
        bench_lbs(torch, smplx_lbs, K, body, label, args.quick)
    bench_slerp(torch, K, args.quick)
    bench_warp(torch, K, args.quick)
    bench_centres(K, args.quick)
    if K.cuda_available() and torch.cuda.is_available():
        bench_gpu(torch, smplx_lbs, K, bodies["a dense SMPL-sized random model"])
    else:
        print("\n-- GPU section skipped: no CUDA device here --")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
