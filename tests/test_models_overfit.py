"""Overfit test: a tiny VisHMR on a fixed synthetic batch must drive every loss term down.

This is the end-to-end check that gradients reach every head through the real training path
(teacher-forced warp, flow sampling, eq. 4/5 merge, LBS, projection). GT comes from posing the
procedural body; the IUV map is a fixed foreground disc with random-but-fixed (U, V), and the GT
visibility is computed from it with ``visibility_ground_truth`` (eq. 1).
"""

from __future__ import annotations

import statistics
import time

import pytest
import torch

from hmr_ros.body import procedural_body
from hmr_ros.kernels import torch_ops as ops
from hmr_ros.models import (LossWeights, VisHMR, VisHMRConfig, VisHMRLoss,
                            visibility_ground_truth, weak_perspective_project)

STEPS = 200  # "a few hundred steps" (issue 3); about a minute on 2 cores
WINDOW = 20
#: starts at its minimum (β = 0 at initialisation) and must rise to fit GT β ≠ 0
NOT_DECREASING_BY_DESIGN = {"betas_prior"}


def _synthetic_batch(model, batch=2, size=16):
    gen = torch.Generator().manual_seed(1)
    rel = ops.axis_angle_to_matrix(torch.randn(batch, 24, 3, generator=gen) * 0.3)
    betas = torch.randn(batch, 10, generator=gen) * 0.5
    with torch.no_grad():
        _, joints = model.lbs(betas, rel)
    cam = torch.tensor([[0.9, 0.05, -0.1], [0.8, -0.1, 0.05]])
    images = torch.randn(batch, 3, model.config.crop_size, model.config.crop_size, generator=gen)
    yy, xx = torch.meshgrid(torch.arange(float(size)), torch.arange(float(size)), indexing="ij")
    centre = (size - 1) / 2
    fg = (((xx - centre) ** 2 + (yy - centre) ** 2) < (0.375 * size) ** 2).float()
    uv = torch.rand(batch, 2, size, size, generator=gen) * fg
    iuv = torch.cat([fg.expand(batch, 1, size, size), uv], dim=1)
    targets = {
        "iuv": iuv, "rel_rotmats": rel, "visibility": visibility_ground_truth(
            iuv, model.atlas_part_map), "joints3d": joints,
        "keypoints2d": weak_perspective_project(joints, cam), "betas": betas,
    }
    return images, targets


@pytest.mark.slow
def test_every_loss_term_decreases_when_overfitting():
    torch.manual_seed(0)
    cfg = VisHMRConfig(backbone="resnet18", crop_size=64, uv_size=16, num_hypotheses=2,
                       deconv_channels=32, attn_dim=32, attn_heads=2, attn_layers=1,
                       flow_blocks=2, flow_hidden=64, head_hidden=64)
    model = VisHMR(cfg, procedural_body()).train()
    images, targets = _synthetic_batch(model)
    assert 0 < targets["visibility"].mean() < 1  # a non-trivial visibility target
    loss_fn = VisHMRLoss(LossWeights())
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=1e-4)
    z_gen = torch.Generator().manual_seed(2)
    history = []
    start = time.perf_counter()
    for step in range(STEPS):
        out = model(images, z=model.default_z(2, generator=z_gen), gt_iuv=targets["iuv"],
                    gt_rel_rotmats=targets["rel_rotmats"])
        terms = loss_fn(out, targets)
        opt.zero_grad()
        terms["total"].backward()
        opt.step()
        history.append({k: v.item() for k, v in terms.items()})
        if step % 20 == 0 or step == STEPS - 1:
            print(step, " ".join(f"{k}={v:.4g}" for k, v in history[-1].items()))
    print(f"{STEPS} steps in {time.perf_counter() - start:.1f} s")

    failures = []
    for name in history[0]:
        first = statistics.mean(h[name] for h in history[:WINDOW])
        last = statistics.mean(h[name] for h in history[-WINDOW:])
        print(f"{name:12s} first {first:10.4g}  last {last:10.4g}")
        assert all(torch.isfinite(torch.tensor(h[name])) for h in history), name
        if name in NOT_DECREASING_BY_DESIGN:
            continue
        # robust "decreased by 30 %" that also holds for the NLL, which goes negative
        if not last < first - 0.3 * abs(first):
            failures.append(f"{name}: {first:.4g} -> {last:.4g}")
    assert not failures, failures
