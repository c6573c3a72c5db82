"""``hmr-ros live`` on a 30 FPS video file: capture-to-display latency p50/p95 and the share of
frames dropped, for the default model (bundled VisHMR-KP-light + BlazePose) on 2 cores.

    python benchmarks/bench_live.py [--seconds 10] [--threads 2] [--cores 2] [--video FILE]

The clip: OpenCV's ``vtest.avi`` (real pedestrians; ``hmr-ros footage fetch``) re-encoded as a
30 FPS mp4 (mp4v) of ``--seconds`` seconds in a temporary folder, or ``--video`` as given; the
astronaut photo as a moving clip when the footage is missing (said so in the output). It is
delivered in real time, as a camera would (the default pacing of ``hmr-ros live``), and the
loop renders headless to an mp4: latency is from the moment a frame was grabbed to the moment
its overlay (with HUD) was written. The process is pinned to ``--cores`` CPUs.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def make_clip(out: Path, seconds: float, fps: float = 30.0) -> str:
    """A ``seconds`` long 30 FPS mp4 of real footage (or the astronaut); returns what it is."""
    import cv2
    import numpy as np

    from hmr_ros.eval.footage import VIDEO, default_footage_dir

    frames = int(round(seconds * fps))
    source = default_footage_dir() / VIDEO
    cap = cv2.VideoCapture(str(source)) if source.is_file() else None
    first = cap.read()[1] if cap is not None else None
    if first is None:
        from skimage import data

        img = cv2.resize(data.astronaut()[..., ::-1], (640, 640))
        clip = [np.roll(img, 3 * i, axis=1) for i in range(frames)]
        what = "astronaut photo, moving (footage missing: hmr-ros footage fetch)"
    else:
        clip = [first]
        while len(clip) < frames:
            ok, bgr = cap.read()
            if not ok:  # loop the footage when it is shorter than asked
                cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
                continue
            clip.append(bgr)
        what = f"{VIDEO} (real footage, {first.shape[1]}x{first.shape[0]})"
    h, w = clip[0].shape[:2]
    writer = cv2.VideoWriter(str(out), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
    for bgr in clip:
        writer.write(bgr)
    writer.release()
    return what


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=10.0, help="clip length (default 10 s)")
    ap.add_argument("--threads", type=int, default=2, help="ONNX Runtime threads (default 2)")
    ap.add_argument("--cores", type=int, default=2, help="CPUs the process may use (default 2)")
    ap.add_argument("--video", default=None, help="a 30 FPS video instead of the footage clip")
    args = ap.parse_args(argv)

    cpus = sorted(os.sched_getaffinity(0))[: args.cores]
    os.sched_setaffinity(0, cpus)
    from hmr_ros.cli import build_parser
    from hmr_ros.live.cli import run_live
    from hmr_ros.live.loop import format_summary

    with tempfile.TemporaryDirectory() as tmp:
        video = args.video
        if video is None:
            video = str(Path(tmp) / "clip30.mp4")
            what = make_clip(Path(video), args.seconds)
        else:
            what = video
        live_args = build_parser().parse_args(
            ["live", "--video", video, "--headless", "--out", str(Path(tmp) / "overlay.mp4"),
             "-p", f"threads:={args.threads}"])
        s = run_live(live_args)
    share = s["dropped"] / max(s["captured"], 1)
    print(f"clip: {what}, {s['captured']} frames at {s['source_fps']:.0f} FPS; "
          f"default model on {len(cpus)} cores (ONNX Runtime threads {args.threads})")
    print(format_summary(s))
    print(f"RESULT capture-to-display latency p50 {s['latency_ms']['p50']:.1f} ms, "
          f"p95 {s['latency_ms']['p95']:.1f} ms; dropped {100 * share:.1f} % of frames; "
          f"processed {s['processing_fps']:.1f} FPS")
    return 0


if __name__ == "__main__":
    sys.exit(main())
