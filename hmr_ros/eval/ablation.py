"""Paper table 2 for an exported model on a synthetic validation set.

``hmr-ros evaluate --model-dir DIR --data VAL_SHARDS`` runs the deployed path (backend stages +
compiled kernels) on every validation sample once, then merges the same stage outputs in each
ablation mode (visible-only, global-only, KS-highest, KS-matched) and reports MPJPE, PA-MPJPE and
PVE (mm) overall and on heavily occluded persons (at least 30% of the 24 parts invisible), plus
the visibility head's per-part accuracy (ω > 0.5 against ω_gt > 0.5) and, to tell where a model
falls short, the IUV head's accuracy (fg/bg, part, per-part recall against the rendered IUV,
sampled at the IUV's pixel centres) and the accuracy of eq. 1 evaluated on the predicted IUV.

**Crops.** Every render goes through the runtime's own crop path, the one ``FramePipeline`` runs
(``runtime.crop.square_geometry`` + ``crop_batch``: the compiled ``crop_affine`` kernel, bilinear
sampling with pixel centres at integer coordinates, no antialiasing, black outside the image,
``(x / 255 - mean) / std``), so the regressor sees the pixels the deployed node would for that
box. ``--box`` picks the box (``crop_geometry``):

* ``render`` (default): the whole render, context 1.0 -- the synthetic generator frames each
  render as a person crop ("the image *is* the person crop") and training feeds it whole, so
  this is the training geometry, through the deployed filter;
* ``person``: the main person's GT box (amodal ``people_bbox``, clipped to the render by the
  pipeline's ``select_boxes``) with the pipeline's context (``PipelineParams.context``, 1.2), as
  the node crops a detection; outside the render the crop is black (a camera frame would show
  the scene there).

Training on synthetic renders (``train.data.adapt_synthetic``) resizes the whole render with
torch's antialiased bilinear filter (``F.interpolate(..., antialias=True)``, area-like when
shrinking), not the kernel: for the 128 px renders of ``vishmr_light`` (crop 96, a 4:3 shrink)
the two differ by a light blur; real datasets (``data.formats.geometry.warp_crop``) use OpenCV's
bilinear ``warpAffine`` without antialiasing, like the kernel, and centre-aligned (box centre ->
crop pixel (L - 1) / 2), as ``CropGeometry.crop_to_image`` is. The IUV head's accuracy samples
the GT IUV through the same geometry.

"Invisible" is ω_gt < 0.1, i.e. under 5% of the part's atlas texels seen (eq. 1). Not ω_gt < 0.5:
eq. 1 rarely reaches 1 even for fully visible parts (a view shows about half of a part, sampled
sparsely at crop resolution), so that threshold would call almost every person occluded.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Dict, Optional

import numpy as np

MODES = ("visible", "global", "ks_highest", "ks_matched")
MODE_NAMES = {"visible": "visible-only", "global": "global-only (highest likelihood)",
              "ks_highest": "KS-highest", "ks_matched": "KS-matched (VisHMR)"}
OCCLUDED_FRACTION = 0.3
INVISIBLE = 0.1
BOXES = ("render", "person")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model-dir", required=True, help="exported model (manifest.json)")
    parser.add_argument("--data", required=True, help="synthetic shard folder (hmr-ros synth "
                        "--with-vertices for PVE)")
    parser.add_argument("--body", default="procedural")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--limit", type=int, default=0, help="first N samples only (0 = all)")
    parser.add_argument("--out", help="write the results as JSON here")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--keypoints", choices=KEYPOINT_SOURCES, default="auto",
                        help="keypoints fed to a keypoint-conditioned model: detector (BlazePose "
                             "on each render, in the main person's GT box: the deployed input), "
                             "noisy-gt (the training noise model on the GT points), none; auto = "
                             "detector when fetched, else noisy-gt")
    parser.add_argument("--box", choices=BOXES, default="render",
                        help="crop box: the whole render (the training framing) or the main "
                             "person's GT box (as the node crops a detection); see the module "
                             "docs")
    parser.add_argument("--context", type=float, default=None,
                        help="square crop side / the box's longer side (default: 1.0 for "
                             "--box render, the pipeline's 1.2 for --box person)")


def crop_context(box: str = "render", context: Optional[float] = None) -> float:
    """The context a ``--box`` uses unless ``--context`` is given (module docs)."""
    if box not in BOXES:
        raise ValueError(f"box must be one of {BOXES}, got {box!r}")
    if context is not None:
        if not context >= 1.0:
            raise ValueError(f"context must be >= 1.0, got {context}")
        return float(context)
    if box == "render":
        return 1.0
    from hmr_ros.runtime import PipelineParams

    return PipelineParams().context


def crop_geometry(sample, crop_size: int, box: str = "render", context: Optional[float] = None):
    """The ``CropGeometry`` the deployed path takes of one synthetic sample (``image`` H x W x 3;
    ``people_bbox`` for ``box="person"``): ``square_geometry`` of the box, which for ``person``
    has been through the pipeline's ``select_boxes`` (clipped to the render; a box it drops
    -- under ``min_box_size`` inside the render -- falls back to the whole render)."""
    from hmr_ros.runtime import Box, PipelineParams, select_boxes, whole_frame
    from hmr_ros.runtime.crop import square_geometry

    ctx = crop_context(box, context)
    h, w = np.asarray(sample["image"]).shape[:2]
    chosen = whole_frame(w, h)
    if box == "person":
        params = PipelineParams()
        x0, y0, x1, y1 = (float(v) for v in np.asarray(sample["people_bbox"])[0])
        kept = select_boxes([Box(x0, y0, x1, y1, 1.0)], w, h, score_threshold=0.0,
                            min_size=params.min_box_size, max_persons=1)
        chosen = kept[0] if kept else chosen
    return square_geometry(chosen, crop_size, ctx)


def evaluation_crops(samples, crop_size: int, mean, std, box: str = "render",
                     context: Optional[float] = None):
    """(N x 3 x L x L float32 crops, their geometries) of synthetic samples, each cut by the
    runtime's ``crop_batch`` (the compiled kernel ``FramePipeline`` uses) at ``crop_geometry``."""
    from hmr_ros.runtime.crop import crop_batch

    geoms = [crop_geometry(s, crop_size, box, context) for s in samples]
    crops = [crop_batch(np.ascontiguousarray(s["image"], dtype=np.uint8), [g], mean, std)
             for s, g in zip(samples, geoms)]
    if not crops:
        return np.zeros((0, 3, crop_size, crop_size), np.float32), geoms
    return np.concatenate(crops).astype(np.float32, copy=False), geoms


KEYPOINT_SOURCES = ("auto", "detector", "noisy-gt", "none")


def keypoint_inputs(samples, geoms, source: str, detector, first_index: int) -> np.ndarray:
    """(N, 17, 3) crop-normalised keypoints of each sample's main person, as the pipeline
    would feed them (``runtime.pipeline.crop_keypoints``)."""
    from hmr_ros.runtime.pipeline import crop_keypoints
    from hmr_ros.train.data import synthetic_keypoint_input

    points = []
    for i, (s, g) in enumerate(zip(samples, geoms)):
        if source == "none":
            points.append(None)
        elif source == "detector":
            box = np.asarray(s["people_bbox"], np.float64)[0]
            [found] = detector.keypoints_for_boxes(
                np.ascontiguousarray(s["image"], dtype=np.uint8), [box])
            points.append(None if found is None else found.coco17)
        else:  # the training noise, seeded per sample: the same draws every run
            size = int(np.asarray(s["image"]).shape[0])
            kp = synthetic_keypoint_input(s, size, np.random.default_rng([7, first_index + i]),
                                          p_empty=0.0)
            if kp is None:
                points.append(None)
                continue
            px = kp.copy()  # render-normalised -> image pixels (pixel centres at integers)
            px[:, :2] = (kp[:, :2] + 1.0) * 0.5 * size - 0.5
            points.append(px)
    return crop_keypoints(points, geoms)


def evaluate(model_dir, data_dir, body, batch: int = 16, limit: int = 0,
             threads=None, progress: bool = True, box: str = "render",
             context: Optional[float] = None,
             keypoints: str = "auto") -> Dict[str, Dict[str, float]]:
    """{split: {mode: {metric: value}}} plus ``visibility`` accuracy, counts and the ``crop``
    used (box, context; module docs)."""
    from tqdm import tqdm

    from hmr_ros.data.synthetic import SyntheticShards
    from hmr_ros.eval.metrics import iuv_part_accuracy, mpjpe, pa_mpjpe, pve, visibility_accuracy
    from hmr_ros.runtime import VisHMRRunner, merge

    ctx = crop_context(box, context)
    runner = VisHMRRunner(model_dir, body, backend="onnxruntime", threads=threads)
    prep = runner.manifest.preprocessing
    mean, std = np.asarray(prep["mean"], np.float32), np.asarray(prep["std"], np.float32)
    data = SyntheticShards(data_dir, image_format="uint8")
    detector = None
    if runner.takes_keypoints and keypoints in ("auto", "detector"):
        from hmr_ros.detect import DetectorParams, PoseKeypointDetector, default_model_dir

        if keypoints == "detector" or (default_model_dir() / "manifest.json").is_file():
            detector = PoseKeypointDetector(backend="onnxruntime", threads=threads,
                                            params=DetectorParams(track=False))
            keypoints = "detector"
        else:
            keypoints = "noisy-gt"
    if not runner.takes_keypoints:
        keypoints = "none"
    n = len(data) if not limit else min(limit, len(data))
    per_mode = {m: {"mpjpe": [], "pa_mpjpe": [], "pve": []} for m in MODES}
    omegas, uv_omegas, gt_vis, iuv_labels = [], [], [], []
    for start in tqdm(range(0, n, batch), desc="evaluate", unit="batch", disable=not progress):
        samples = [data.arrays(i) for i in range(start, min(n, start + batch))]
        crops, geoms = evaluation_crops(samples, runner.crop_size, mean, std, box, ctx)
        kp = (keypoint_inputs(samples, geoms, keypoints, detector, start)
              if runner.takes_keypoints else None)
        out = runner(crops, mode="ks_matched", keypoints=kp)
        gj = np.stack([s["people_joints"][0] for s in samples])
        gv = np.stack([s["people_vertices"][0] for s in samples]) \
            if "people_vertices" in samples[0] else None
        for mode in MODES:
            m = merge(out, runner.lbs_model, mode)
            per_mode[mode]["mpjpe"].append(mpjpe(m["joints"], gj))
            per_mode[mode]["pa_mpjpe"].append(pa_mpjpe(m["joints"], gj))
            if gv is not None:
                per_mode[mode]["pve"].append(pve(m["vertices"], gv, m["joints"], gj))
        omegas.append(out["omega"])
        uv_omegas.append(out["uv_visibility"])
        if "iuv" in samples[0]:
            iuv_labels.append(_iuv_labels(out["iuv"], [s["iuv"] for s in samples],
                                          runner.fg_threshold, geoms))
        gt_vis.append(np.stack([s["people_visibility"][0] for s in samples]))
    gt_vis = np.concatenate(gt_vis)
    occluded = (gt_vis < INVISIBLE).mean(1) >= OCCLUDED_FRACTION
    result: Dict[str, Dict] = {"count": {"all": int(n), "occluded": int(occluded.sum())},
                               "crop": {"box": box, "context": ctx}, "keypoints": keypoints}
    for split, mask in (("all", np.ones(n, bool)), ("occluded", occluded)):
        result[split] = {}
        for mode in MODES:
            result[split][mode] = {k: float(np.concatenate(v)[mask].mean())
                                   for k, v in per_mode[mode].items() if v and mask.any()}
    per_part, mean_acc = visibility_accuracy(np.concatenate(omegas), gt_vis)
    result["visibility"] = {"accuracy": mean_acc, "per_part": per_part.tolist()}
    per_part, mean_acc = visibility_accuracy(np.concatenate(uv_omegas), gt_vis)
    result["visibility_from_iuv"] = {"accuracy": mean_acc, "per_part": per_part.tolist()}
    if iuv_labels:
        acc = iuv_part_accuracy(np.concatenate([p for p, _ in iuv_labels]),
                                np.concatenate([g for _, g in iuv_labels]))
        result["iuv"] = {**acc, "per_part_recall": [None if r != r else float(r)  # JSON: no NaN
                                                    for r in acc["per_part_recall"]]}
    return result


def _iuv_labels(pred_iuv, gt_iuvs, fg_threshold: float = 0.5, geometries=None):
    """(predicted, GT) part labels B x h x w: the GT rendered IUV sampled (nearest) at the centres
    of the predicted IUV's pixels (as the training targets are), mapped into the render through
    each crop's geometry (``CropGeometry``: crop pixel edges -> image pixel edges; None = the
    whole render); outside the render the GT is background. The prediction's foreground at the
    threshold the warp uses."""
    from hmr_ros.body.uv_atlas import atlas_part_labels

    pred = atlas_part_labels(pred_iuv, fg_threshold=fg_threshold)
    h, w = pred.shape[-2:]
    sampled = []
    for b, g in enumerate(gt_iuvs):
        g = np.asarray(g, np.float32)  # 3 x H x W
        H, W = g.shape[-2:]
        if geometries is None:  # top-left corner and side of the crop in the render
            y0, x0, side_y, side_x = 0.0, 0.0, H, W
        else:
            geo = geometries[b]
            y0, x0, side_y, side_x = geo.cy - 0.5 * geo.size, geo.cx - 0.5 * geo.size, \
                geo.size, geo.size
        # IUV pixel centres as fractions of the crop side, then image coordinates
        ys = y0 + (np.arange(h) + 0.5) / h * side_y
        xs = x0 + (np.arange(w) + 0.5) / w * side_x
        rows, cols = np.floor(ys).astype(np.int64), np.floor(xs).astype(np.int64)
        inside = (rows >= 0)[:, None] & (rows < H)[:, None] & (cols >= 0) & (cols < W)
        out = g[:, rows.clip(0, H - 1)][:, :, cols.clip(0, W - 1)] * inside
        sampled.append(out)
    return pred, atlas_part_labels(np.stack(sampled))  # sample, then decode


def markdown_table(result: dict) -> str:
    lines = ["| mode | MPJPE | PA-MPJPE | PVE | occluded MPJPE | occluded PA-MPJPE | occluded PVE |",
             "|---|---|---|---|---|---|---|"]
    fmt = lambda d, k: f"{d[k]:.1f}" if k in d else "-"  # noqa: E731
    for mode in MODES:
        a, o = result["all"][mode], result["occluded"].get(mode, {})
        lines.append(f"| {MODE_NAMES[mode]} | {fmt(a, 'mpjpe')} | {fmt(a, 'pa_mpjpe')} | "
                     f"{fmt(a, 'pve')} | {fmt(o, 'mpjpe')} | {fmt(o, 'pa_mpjpe')} | "
                     f"{fmt(o, 'pve')} |")
    c = result["count"]
    lines.append("")
    crop = result.get("crop")
    if crop:
        lines.append(f"crops: runtime crop_batch, box {crop['box']}, context {crop['context']:g}"
                     f"; keypoint input: {result.get('keypoints', 'none')}")
    lines.append(f"{c['all']} validation persons, {c['occluded']} heavily occluded "
                 f"(>= {OCCLUDED_FRACTION:.0%} of parts with ω_gt < {INVISIBLE}); visibility head "
                 f"accuracy (ω > 0.5 vs ω_gt > 0.5, mean over parts): "
                 f"{100 * result['visibility']['accuracy']:.1f}%; eq. 1 on the predicted IUV: "
                 f"{100 * result['visibility_from_iuv']['accuracy']:.1f}%")
    if "iuv" in result:
        i = result["iuv"]
        lines.append(f"IUV head: fg/bg {100 * i['foreground']:.1f}%, part (GT foreground) "
                     f"{100 * i['part']:.1f}%, per-part recall "
                     + " ".join("-" if r is None else f"{100 * r:.0f}"
                                for r in i["per_part_recall"]))
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from hmr_ros.body import load_body_model

    result = evaluate(args.model_dir, args.data, load_body_model(args.body), args.batch,
                      args.limit, args.threads, box=args.box, context=args.context,
                      keypoints=args.keypoints)
    print(markdown_table(result))
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    return 0
