"""Uniform view of kernel arguments: NumPy arrays on the CPU, CUDA arrays on the GPU.

Validation happens here once for both devices: the compiled ops take raw pointers. CUDA arrays
are any object exposing ``__cuda_array_interface__`` (torch CUDA tensors, CuPy arrays); outputs
are allocated with the input's own library, on its device and stream, so they live where the
inputs live.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ._ext import cuda_compiled
from .errors import KernelError


@dataclass(frozen=True)
class Arg:
    """A validated kernel argument."""

    obj: object
    ptr: int
    shape: tuple
    dtype: np.dtype
    cuda: bool


def _c_contiguous(shape, strides, itemsize) -> bool:
    expected = itemsize
    for n, s in zip(reversed(shape), reversed(strides)):
        if n != 1 and s != expected:
            return False
        expected *= n
    return True


def arg(op: str, name: str, x, dtypes) -> Arg:
    """Describes ``x`` and checks its dtype (one of ``dtypes``) and C-contiguity."""
    dtypes = tuple(np.dtype(d) for d in dtypes)
    if isinstance(x, np.ndarray):
        ptr, shape, dtype, cuda = x.ctypes.data, x.shape, x.dtype, False
        contiguous = x.flags.c_contiguous
    elif hasattr(x, "__cuda_array_interface__"):
        cai = x.__cuda_array_interface__
        shape, dtype, cuda = tuple(cai["shape"]), np.dtype(cai["typestr"]), True
        ptr = cai["data"][0]
        strides = cai.get("strides")
        contiguous = strides is None or _c_contiguous(shape, strides, dtype.itemsize)
    else:
        raise KernelError(
            f"{op}: {name} must be a NumPy array or a CUDA array (__cuda_array_interface__), "
            f"got {type(x).__name__}"
        )
    if dtype not in dtypes:
        want = " or ".join(d.name for d in dtypes)
        raise KernelError(f"{op}: {name} must be {want}, got {dtype.name} "
                          f"(convert with .astype(numpy.{dtypes[0].name}))")
    if not contiguous:
        raise KernelError(f"{op}: {name} must be C-contiguous (use numpy.ascontiguousarray or "
                          ".contiguous())")
    if cuda and not cuda_compiled():
        raise KernelError(f"{op}: {name} is a CUDA array but hmr_ros was built without CUDA "
                          "kernels (rebuild with nvcc on PATH or HMR_ROS_CUDA=1)")
    return Arg(x, ptr, tuple(int(s) for s in shape), dtype, cuda)


def check_shape(op: str, name: str, a: Arg, pattern: tuple, dims: dict) -> None:
    """Checks ``a.shape`` against ``pattern`` (ints, or names bound in ``dims`` on first use)."""
    ok = len(a.shape) == len(pattern)
    if ok:
        for p, n in zip(pattern, a.shape):
            if isinstance(p, str):
                if dims.setdefault(p, n) != n:
                    ok = False
            elif p != n:
                ok = False
    if not ok:
        want = ", ".join(f"{p}={dims[p]}" if isinstance(p, str) and p in dims else str(p)
                         for p in pattern)
        raise KernelError(f"{op}: {name} must have shape ({want}), got {a.shape}")


def same_device(op: str, *args: Arg) -> bool:
    """True when every argument is on the GPU; an error when they are mixed."""
    kinds = {a.cuda for a in args}
    if len(kinds) > 1:
        raise KernelError(f"{op}: inputs must all be NumPy arrays or all CUDA arrays, not mixed")
    return kinds.pop()


def same_dtype(op: str, *args: Arg) -> np.dtype:
    dts = {a.dtype for a in args}
    if len(dts) > 1:
        raise KernelError(f"{op}: inputs must share one dtype, got {sorted(d.name for d in dts)}")
    return dts.pop()


def parents_array(op: str, parents, num_joints: int) -> np.ndarray:
    """Validated kinematic tree as int64 on the host: root first, parents before children."""
    if hasattr(parents, "__cuda_array_interface__") and hasattr(parents, "cpu"):
        parents = parents.cpu()
    p = np.asarray(parents)
    if p.ndim != 1 or p.shape[0] != num_joints or not np.issubdtype(p.dtype, np.integer):
        raise KernelError(f"{op}: parents must be an integer array of shape ({num_joints},), "
                          f"got {p.dtype.name} {p.shape}")
    p = np.ascontiguousarray(p, dtype=np.int64)
    if num_joints and p[0] != -1:
        raise KernelError(f"{op}: parents[0] must be -1 (the root), got {p[0]}")
    bad = [i for i in range(1, num_joints) if not 0 <= p[i] < i]
    if bad:
        i = bad[0]
        raise KernelError(f"{op}: parents must be topologically ordered (0 <= parents[i] < i); "
                          f"parents[{i}] = {p[i]}")
    return p


# --- allocation on the inputs' device -------------------------------------------------------

def _library(obj) -> str:
    mod = type(obj).__module__.split(".")[0]
    if mod in ("torch", "cupy"):
        return mod
    raise KernelError(f"CUDA arrays of type {type(obj).__name__} are not supported for outputs; "
                      "pass torch CUDA tensors or CuPy arrays")


def empty_like_device(like: Arg, shape, dtype, zero: bool = False):
    """A new array of ``shape``/``dtype`` where ``like`` lives (NumPy, torch or CuPy)."""
    dtype = np.dtype(dtype)
    if not like.cuda:
        return np.zeros(shape, dtype) if zero else np.empty(shape, dtype)
    if _library(like.obj) == "torch":
        import torch

        tdt = {np.dtype("float32"): torch.float32, np.dtype("float64"): torch.float64,
               np.dtype("int64"): torch.int64, np.dtype("int32"): torch.int32,
               np.dtype("float16"): torch.float16}[dtype]
        make = torch.zeros if zero else torch.empty
        return make(tuple(shape), dtype=tdt, device=like.obj.device)
    import cupy

    make = cupy.zeros if zero else cupy.empty
    with cupy.cuda.Device(like.obj.device.id):
        return make(tuple(shape), dtype=dtype)


def to_device(like: Arg, host: np.ndarray):
    """Copies a small host array to ``like``'s device (parents, part maps, crop affines) on the
    current stream. torch: through pinned memory, non-blocking, so the host does not wait for
    the work queued before it (``torch.as_tensor(..., device=cuda)`` would synchronise the
    stream); torch's caching host allocator keeps the pinned block until the copy is done."""
    if not like.cuda:
        return host
    if _library(like.obj) == "torch":
        import torch

        pinned = torch.from_numpy(np.ascontiguousarray(host)).pin_memory()
        return pinned.to(like.obj.device, non_blocking=True)
    import cupy

    with cupy.cuda.Device(like.obj.device.id):
        return cupy.asarray(host)


def stream_of(like: Arg) -> int:
    """The current CUDA stream of ``like``'s library and device, as an integer handle."""
    if _library(like.obj) == "torch":
        import torch

        return int(torch.cuda.current_stream(like.obj.device).cuda_stream)
    import cupy

    return int(cupy.cuda.get_current_stream().ptr)


def ptr(x) -> int:
    """Raw data pointer of an array we allocated."""
    if isinstance(x, np.ndarray):
        return x.ctypes.data
    return int(x.__cuda_array_interface__["data"][0])
