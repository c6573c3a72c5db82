"""The tiny VisHMR the deployment tests share: small enough to export in a second, with
calibrated BatchNorm and a flow moved off its identity start so the graphs compute something
non-trivial."""

from __future__ import annotations

from pathlib import Path

import torch

from hmr_ros import cli
from hmr_ros.body import procedural_body
from hmr_ros.models import VisHMR, VisHMRConfig
from hmr_ros.models.checkpoint import save_checkpoint

TINY = VisHMRConfig(backbone="resnet18", crop_size=64, uv_size=16, num_hypotheses=3,
                    deconv_channels=32, attn_dim=32, attn_heads=2, attn_layers=1,
                    flow_blocks=2, flow_hidden=32, head_hidden=32)


def tiny_vishmr(seed: int = 0, body=None) -> VisHMR:
    torch.manual_seed(seed)
    net = VisHMR(TINY, body if body is not None else procedural_body())
    with torch.no_grad():
        net.train()
        for _ in range(3):
            net(torch.randn(4, 3, TINY.crop_size, TINY.crop_size))
        for p in net.flow.parameters():
            p.add_(0.05 * torch.randn_like(p) / (p.shape[-1] ** 0.5 if p.dim() == 2 else 1))
    return net.eval()


def export_tiny(root: Path, body=None) -> Path:
    """``tiny_vishmr`` saved as ``root/tiny.pt`` and exported through the CLI to ``root/onnx``."""
    net = tiny_vishmr(body=body)
    save_checkpoint(root / "tiny.pt", net)
    assert cli.main(["export", "--model", "vishmr", "--checkpoint", str(root / "tiny.pt"),
                     "--out", str(root / "onnx")]) == 0
    return root
