"""Loads the compiled kernel library; the only importer of hmr_ros._C."""

from __future__ import annotations

import functools

from .errors import KernelError


@functools.lru_cache(maxsize=1)
def ext():
    """The compiled module, with a message that says how to build it when it is missing."""
    try:
        from hmr_ros import _C
    except ImportError as exc:  # pragma: no cover - exercised only on a broken install
        raise KernelError(
            "hmr_ros kernels are not built: run `pip install -e .` (or "
            f"`python setup.py build_ext --inplace`) in the hmr_ros checkout ({exc})"
        ) from exc
    return _C


def cuda_compiled() -> bool:
    """True when the CUDA kernels were compiled into the extension."""
    return bool(ext().has_cuda)


def cuda_available() -> bool:
    """True when the CUDA kernels are compiled in and a CUDA device is visible."""
    return cuda_compiled() and ext().cuda_device_count() > 0
