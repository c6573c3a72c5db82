"""Paper table 2 for an exported model on a synthetic validation set.

``hmr-ros evaluate --model-dir DIR --data VAL_SHARDS`` runs the deployed path (backend stages +
compiled kernels) on every validation sample once, then merges the same stage outputs in each
ablation mode (visible-only, global-only, KS-highest, KS-matched) and reports MPJPE, PA-MPJPE and
PVE (mm) overall and on heavily occluded persons (at least 30% of the 24 parts invisible), plus
the visibility head's per-part accuracy (ω > 0.5 against ω_gt > 0.5) and, to tell where a model
falls short, the IUV head's accuracy (fg/bg, part, per-part recall against the rendered IUV,
sampled at the IUV's pixel centres) and the accuracy of eq. 1 evaluated on the predicted IUV.

"Invisible" is ω_gt < 0.1, i.e. under 5% of the part's atlas texels seen (eq. 1). Not ω_gt < 0.5:
eq. 1 rarely reaches 1 even for fully visible parts (a view shows about half of a part, sampled
sparsely at crop resolution), so that threshold would call almost every person occluded.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Dict

import numpy as np

MODES = ("visible", "global", "ks_highest", "ks_matched")
MODE_NAMES = {"visible": "visible-only", "global": "global-only (highest likelihood)",
              "ks_highest": "KS-highest", "ks_matched": "KS-matched (VisHMR)"}
OCCLUDED_FRACTION = 0.3
INVISIBLE = 0.1


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model-dir", required=True, help="exported model (manifest.json)")
    parser.add_argument("--data", required=True, help="synthetic shard folder (hmr-ros synth "
                        "--with-vertices for PVE)")
    parser.add_argument("--body", default="procedural")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--limit", type=int, default=0, help="first N samples only (0 = all)")
    parser.add_argument("--out", help="write the results as JSON here")
    parser.add_argument("--threads", type=int, default=None)


def evaluate(model_dir, data_dir, body, batch: int = 16, limit: int = 0,
             threads=None, progress: bool = True) -> Dict[str, Dict[str, float]]:
    """{split: {mode: {metric: value}}} plus ``visibility`` accuracy and counts."""
    import cv2
    from tqdm import tqdm

    from hmr_ros.data.synthetic import SyntheticShards
    from hmr_ros.eval.metrics import iuv_part_accuracy, mpjpe, pa_mpjpe, pve, visibility_accuracy
    from hmr_ros.runtime import VisHMRRunner, merge

    runner = VisHMRRunner(model_dir, body, backend="onnxruntime", threads=threads)
    prep = runner.manifest.preprocessing
    mean, std = np.asarray(prep["mean"], np.float32), np.asarray(prep["std"], np.float32)
    data = SyntheticShards(data_dir, image_format="uint8")
    n = len(data) if not limit else min(limit, len(data))
    per_mode = {m: {"mpjpe": [], "pa_mpjpe": [], "pve": []} for m in MODES}
    omegas, uv_omegas, gt_vis, iuv_labels = [], [], [], []
    for start in tqdm(range(0, n, batch), desc="evaluate", unit="batch", disable=not progress):
        samples = [data.arrays(i) for i in range(start, min(n, start + batch))]
        crops = np.stack([cv2.resize(s["image"], (runner.crop_size,) * 2,
                                     interpolation=cv2.INTER_AREA) for s in samples])
        crops = ((crops / 255.0 - mean) / std).transpose(0, 3, 1, 2).astype(np.float32)
        out = runner(crops, mode="ks_matched")
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
                                          runner.fg_threshold))
        gt_vis.append(np.stack([s["people_visibility"][0] for s in samples]))
    gt_vis = np.concatenate(gt_vis)
    occluded = (gt_vis < INVISIBLE).mean(1) >= OCCLUDED_FRACTION
    result: Dict[str, Dict] = {"count": {"all": int(n), "occluded": int(occluded.sum())}}
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


def _iuv_labels(pred_iuv, gt_iuvs, fg_threshold: float = 0.5):
    """(predicted, GT) part labels B x h x w: the GT rendered IUV sampled at the centres of the
    predicted IUV's pixels (as the training targets are); the prediction's foreground at the
    threshold the warp uses."""
    from hmr_ros.body.uv_atlas import atlas_part_labels

    pred = atlas_part_labels(pred_iuv, fg_threshold=fg_threshold)
    gt = np.stack([np.asarray(g, np.float32) for g in gt_iuvs])  # B x 3 x H x W
    h, w = pred.shape[-2:]
    rows = ((np.arange(h) + 0.5) * gt.shape[-2] / h).astype(np.int64)
    cols = ((np.arange(w) + 0.5) * gt.shape[-1] / w).astype(np.int64)
    return pred, atlas_part_labels(gt[:, :, rows][:, :, :, cols])  # sample, then decode


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
                      args.limit, args.threads)
    print(markdown_table(result))
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    return 0
