"""Shared test setup: the `gpu` marker skips without a CUDA device and CUDA kernels."""

from __future__ import annotations

import pytest


def _cuda_ready() -> bool:
    try:
        import torch

        from hmr_ros.kernels import cuda_available
    except ImportError:
        return False
    return torch.cuda.is_available() and cuda_available()


def pytest_collection_modifyitems(config, items):
    if _cuda_ready():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device, torch with CUDA and hmr_ros CUDA kernels")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
