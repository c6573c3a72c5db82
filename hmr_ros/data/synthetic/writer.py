"""Writing a synthetic dataset to disk: npz shards + ``dataset.json`` (``hmr-ros synth --out``).

Layout of ``DIR``::

    shard_00000.npz   arrays of samples [0, shard_size), stacked on a leading axis
    shard_00001.npz   ...
    dataset.json      counts, seed, SynthConfig, body, photos, per-sample array shapes/dtypes

Format ``hmr_ros.synthetic/2`` added the COCO-17 arrays (``people_coco17*``,
``people_face_front``) and the realism options; readers accept /1 too (``dataset`` fills the
missing arrays in). ``photos`` records the digest and count of the photos used (None without),
so a dataset names the exact photo set that made it.

Same ``(num, config, seed, shard_size, compress, with_vertices)`` -> byte-identical files, with
any number of workers: sample ``i`` only depends on ``(seed, i)`` and the shard writer stamps no
times (``shards.save_npz``); ``dataset.json`` holds no paths, hosts, dates or git state.
Shards and the json are written to temporary names and renamed, so an interrupted run never
leaves a half-written file under a final name (``dataset.json`` is written last).
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional, Tuple, Union

import numpy as np

import hmr_ros

from .config import MAX_PEOPLE, SynthConfig
from .generator import SyntheticGenerator, sample_arrays_spec
from .shards import save_npz

__all__ = ["write_dataset", "shard_name", "FORMAT", "FORMAT_V1", "READABLE_FORMATS",
           "CONVENTIONS"]

FORMAT = "hmr_ros.synthetic/2"
FORMAT_V1 = "hmr_ros.synthetic/1"  #: before COCO-17 and realism (no people_coco17*)
READABLE_FORMATS = (FORMAT_V1, FORMAT)

#: copied into dataset.json so that a shard directory explains its own numbers
CONVENTIONS = {
    "camera_frame": "OpenCV: x right, y down, z forward, metres; camera at the origin",
    "pixels": "pixel (col, row) has its centre at (col + 0.5, row + 0.5); K maps camera-frame "
              "points to these continuous coordinates",
    "pose": "people_rel_rotmats: relative rotations (SMPL layout); root = global orientation in "
            "the camera frame, so LBS(betas, rel_rotmats) + transl = camera-frame vertices",
    "crop": "the image is the square person crop: centre (size/2, size/2), side size",
    "crop_cam": "(s, tx, ty): x_n = s*(X_xy + (tx, ty)) for LBS joints X, crop-normalised "
                "[-1, 1]; s = 2f/(L Tz), (tx, ty) = (Tx, Ty) + (c_K - c_crop) Tz/f",
    "iuv": "main person only: I in {0, 1}, U, V atlas coordinates in [0, 1], 0 elsewhere",
    "part_seg": "main-person part id; -1 background, -2 other person, -3 occluder",
    "person_seg": "person index (0 = main); -1 background, -2 occluder",
    "visibility": "paper eq. 1, min(1, 2 covered/total) on the atlas part map, evaluated on "
                  "the person's visible pixels at config.visibility_size",
    "people": f"people_* arrays have {MAX_PEOPLE} rows, main person first; people_valid marks "
              "the rows in use (others zero, identity rotations)",
    "coco17": "people_coco17 (pixels, as keypoints2d), _norm (crop-normalised), _3d (camera "
              "frame): COCO-17 in hmr_ros.body.keypoints.COCO17_NAMES order; shoulders, elbows, "
              "wrists, knees, ankles = SMPL joints, hips = SMPL hips moved outwards and down "
              "(coco17.HIP_OUTWARD, HIP_DOWN), nose/eyes/ears = fixed points of the head surface",
    "coco17_vis": "0 outside the image, 1 inside but occluded (occluders, other people, own "
                  "body, face turned away), 2 visible",
    "face_front": "cosine between the head's forward direction and the direction to the "
                  "camera (> 0: face towards the camera)",
}


def shard_name(index: int) -> str:
    return f"shard_{index:05d}.npz"


# one generator per worker process, built by the pool initialiser
_WORKER: Dict[str, SyntheticGenerator] = {}


def _init_worker(config_dict: dict, seed: int, with_vertices: bool) -> None:
    _WORKER["gen"] = SyntheticGenerator(SynthConfig.from_dict(config_dict), seed,
                                        with_vertices=with_vertices)


def _make_shard(job: Tuple[int, int, int, str, bool]) -> Tuple[int, int]:
    shard, start, stop, out_dir, compress = job
    gen = _WORKER["gen"]
    samples = [gen.sample(i) for i in range(start, stop)]
    stacked = {k: np.stack([s[k] for s in samples]) for k in samples[0]}
    save_npz(Path(out_dir) / shard_name(shard), stacked, compress=compress)
    return shard, stop - start


class _Progress:
    """tqdm when installed, else a line every ~10 % (long jobs must show they are alive)."""

    def __init__(self, total: int, enabled: bool) -> None:
        self.total, self.done, self.enabled, self.bar = total, 0, enabled, None
        self.t0, self.next_print = time.perf_counter(), 0.0
        if enabled:
            try:
                from tqdm import tqdm

                self.bar = tqdm(total=total, unit="img", desc="synth")
            except ImportError:
                pass

    def update(self, n: int) -> None:
        self.done += n
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.update(n)
        elif self.done >= self.next_print or self.done == self.total:
            rate = self.done / max(time.perf_counter() - self.t0, 1e-9)
            print(f"synth: {self.done}/{self.total} images ({rate:.1f} img/s)", file=sys.stderr,
                  flush=True)
            self.next_print = self.done + max(1, self.total // 10)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _jobs(num: int, shard_size: int, out_dir: Path, compress: bool) -> List[tuple]:
    return [(k, start, min(start + shard_size, num), str(out_dir), compress)
            for k, start in enumerate(range(0, num, shard_size))]


def write_dataset(out_dir: Union[str, Path], num: int, config: Optional[SynthConfig] = None,
                  seed: int = 0, shard_size: int = 256, workers: int = 1,
                  compress: bool = False, with_vertices: bool = False,
                  progress: bool = True) -> Path:
    """Generate samples ``0 .. num-1`` of ``(config, seed)`` into ``out_dir``; returns the path
    of ``dataset.json``. ``workers > 1`` makes shards in parallel processes (same bytes)."""
    config = config or SynthConfig()
    num, shard_size, workers = int(num), int(shard_size), max(1, int(workers))
    if num < 1:
        raise ValueError(f"num must be >= 1, got {num}")
    if shard_size < 1:
        raise ValueError(f"shard_size must be >= 1, got {shard_size}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    jobs = _jobs(num, shard_size, out, compress)
    bar = _Progress(num, progress)
    init_args = (config.to_dict(), int(seed), bool(with_vertices))
    from .photos import open_photo_bank

    bank = open_photo_bank(config.photos)  # built here once, before any worker opens it
    photos = {"count": len(bank), "digest": bank.digest} if bank is not None else None
    try:
        if workers == 1 or len(jobs) == 1:
            gen = SyntheticGenerator(config, int(seed), with_vertices=with_vertices,
                                     photos=bank)
            body = gen.body
            for shard, start, stop, _, _ in jobs:
                samples = []
                for i in range(start, stop):
                    samples.append(gen.sample(i))
                    bar.update(1)
                stacked = {k: np.stack([s[k] for s in samples]) for k in samples[0]}
                save_npz(out / shard_name(shard), stacked, compress=compress)
        else:
            body = _procedural_body()
            ctx = mp.get_context("spawn")
            # one OpenMP thread per worker unless the user chose: N workers x N kernel threads
            # on N cores thrash (the kernels' parallel regions are tiny at crop sizes)
            saved = os.environ.get("OMP_NUM_THREADS")
            os.environ.setdefault("OMP_NUM_THREADS", "1")
            try:
                with ctx.Pool(min(workers, len(jobs)), initializer=_init_worker,
                              initargs=init_args) as pool:
                    for _, count in pool.imap_unordered(_make_shard, jobs):
                        bar.update(count)
            finally:
                if saved is None:
                    os.environ.pop("OMP_NUM_THREADS", None)
    finally:
        bar.close()
    spec = sample_arrays_spec(config.size, body.num_vertices if with_vertices else None)
    meta = {
        "format": FORMAT,
        "generator": f"hmr_ros {hmr_ros.__version__} hmr_ros.data.synthetic",
        "num_samples": num,
        "shard_size": shard_size,
        "seed": int(seed),
        "compressed": bool(compress),
        "with_vertices": bool(with_vertices),
        "max_people": MAX_PEOPLE,
        "body": {"name": body.name, "num_vertices": body.num_vertices,
                 "num_faces": body.num_faces},
        "config": config.to_dict(),
        "photos": photos,
        "shards": [{"file": shard_name(k), "first_index": start, "count": stop - start}
                   for k, start, stop, _, _ in jobs],
        "arrays": {k: {"shape": list(shape), "dtype": dtype} for k, (shape, dtype) in
                   sorted(spec.items())},
        "conventions": CONVENTIONS,
    }
    path = out / "dataset.json"
    tmp = path.with_name("dataset.json.tmp")
    tmp.write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    tmp.replace(path)
    return path


def _procedural_body():
    from hmr_ros.body import procedural_body

    return procedural_body()
