"""Writes the demo's sample images: synthetic renders with their ground truth.

``python -m hmr_ros.apps.demo_samples DIR [--num 6] [--size 160] [--seed 7]`` writes
``sample_XX.png``, ``boxes.json`` (the main person's box, as a detector would give it) and
``gt.npz`` (names, camera-frame joints and vertices of the main person) -- the inputs of
``make demo``. Deterministic by seed; the shipped set in ``models/samples`` was made this way.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np


def write_samples(out_dir, num: int = 6, size: int = 160, seed: int = 7) -> Path:
    from hmr_ros.data.synthetic import SynthConfig, SyntheticGenerator
    from hmr_ros.data.synthetic.png import write_png

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    gen = SyntheticGenerator(SynthConfig(size=size), seed=seed, with_vertices=True)
    names, joints, vertices, boxes = [], [], [], {}
    for i in range(num):
        s = gen.sample(i)
        name = f"sample_{i:02d}.png"
        write_png(out / name, s["image"])
        names.append(name)
        joints.append(s["people_joints"][0])
        vertices.append(s["people_vertices"][0])
        x0, y0, x1, y1 = np.clip(s["people_bbox"][0], 0, size).tolist()
        boxes[name] = [[round(x0, 1), round(y0, 1), round(x1, 1), round(y1, 1), 1.0]]
    (out / "boxes.json").write_text(json.dumps(boxes, indent=1) + "\n")
    np.savez_compressed(out / "gt.npz", names=np.array(names), joints3d=np.stack(joints),
                        vertices=np.stack(vertices).astype(np.float32))
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out")
    ap.add_argument("--num", type=int, default=6)
    ap.add_argument("--size", type=int, default=160)
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args(argv)
    print(f"wrote {write_samples(args.out, args.num, args.size, args.seed)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
