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


_DOMAIN_COUNTER = [0]


@pytest.fixture
def dds_domain(monkeypatch):
    """A DDS domain id of its own for one test, on the loopback-only Cyclone configuration
    (inherited by the processes the test starts)."""
    import os

    from hmr_ros.transport.dds import loopback_config

    import time

    _DOMAIN_COUNTER[0] += 1
    # spread runs that share a host (parallel CI jobs) over the 230 usable ids
    domain = 1 + (os.getpid() * 13 + time.time_ns() // 1000 + _DOMAIN_COUNTER[0] * 7) % 230
    monkeypatch.setenv("CYCLONEDDS_URI", loopback_config())
    monkeypatch.setenv("ROS_DOMAIN_ID", str(domain))
    monkeypatch.delenv("ROS_DISTRO", raising=False)
    return domain
