"""CUDA plumbing for the GPU backends: the device's primary context, one stream, pinned buffers.

Why the *primary* context (and never ``pycuda.autoinit``): torch, the CUDA runtime API that
TensorRT uses, and our CUDA kernels all work in the device's primary context. ``autoinit`` (or
``make_context``) would create a second context on the same GPU: memory allocated in one is not
usable from the other without peer copies, each holds its own ~300 MiB of driver state, and
kernels from the two contexts time-slice instead of running concurrently. Retaining the primary
context makes every pointer we hand out valid in torch and vice versa.

CUDA keeps a *per-thread* stack of current contexts, and ROS executors call back on arbitrary
threads, so :class:`PrimaryContext` is pushed around every piece of work (``with ctx: ...``),
not once at start-up. Pushes nest.

``pycuda`` is imported lazily: this module imports (and :func:`plan_buffers` runs) on machines
without CUDA.
"""

from __future__ import annotations

import logging
import math
import threading
from typing import Iterable, List, NamedTuple, Optional, Sequence, Tuple, Union

import numpy as np

from .errors import EngineError

log = logging.getLogger("hmr_ros.runtime")

PYCUDA_HINT = ("pycuda is not installed: pip install pycuda (needs the CUDA toolkit headers and "
               "an NVIDIA driver); or use the onnxruntime backend")


# --- lazy imports / probes -------------------------------------------------------------------

def import_pycuda():
    """``pycuda.driver``, initialised; :class:`EngineError` saying how to get it otherwise."""
    try:
        import pycuda.driver as cuda
    except ImportError as exc:
        raise EngineError(f"{PYCUDA_HINT} ({exc})") from exc
    try:
        cuda.init()
    except Exception as exc:  # pycuda.driver.Error: no driver / no device
        raise EngineError(f"CUDA driver initialisation failed ({exc}): is an NVIDIA GPU and "
                          "driver present (nvidia-smi)? Use the onnxruntime backend otherwise"
                          ) from exc
    return cuda


def gpu_count() -> int:
    """CUDA devices visible to this process: pycuda's driver count, else torch's; 0 on error."""
    try:
        import pycuda.driver as cuda

        cuda.init()
        return int(cuda.Device.count())
    except Exception:  # ImportError, or a driver error: fall back to torch
        pass
    try:
        import torch

        return int(torch.cuda.device_count()) if torch.cuda.is_available() else 0
    except Exception:
        return 0


def gpu_available() -> bool:
    return gpu_count() > 0


def device_info(index: int = 0) -> Tuple[str, str]:
    """``(name, "major.minor")`` of CUDA device ``index`` via pycuda, else torch."""
    try:
        import pycuda.driver as cuda

        cuda.init()
        dev = cuda.Device(index)
        major, minor = dev.compute_capability()
        return str(dev.name()), f"{major}.{minor}"
    except ImportError:
        pass
    except Exception as exc:
        raise EngineError(f"CUDA device {index} is not usable ({exc})") from exc
    try:
        import torch

        if torch.cuda.is_available() and index < torch.cuda.device_count():
            major, minor = torch.cuda.get_device_capability(index)
            return torch.cuda.get_device_name(index), f"{major}.{minor}"
    except ImportError:
        pass
    raise EngineError(f"no CUDA device {index}: {gpu_count()} visible (check "
                      "CUDA_VISIBLE_DEVICES and nvidia-smi)")


# --- the primary context ---------------------------------------------------------------------

class PrimaryContext:
    """The primary context of device ``index``, retained for this object's lifetime.

    ``with ctx:`` pushes it onto the calling thread's context stack and pops it on exit (nests;
    thread-safe because the stack is per thread). :meth:`close` releases the retain; after that
    the context lives on only while torch or another owner still holds it.
    """

    def __init__(self, index: int = 0):
        cuda = import_pycuda()
        count = cuda.Device.count()
        if not 0 <= index < count:
            raise EngineError(f"no CUDA device {index}: {count} visible (check "
                              "CUDA_VISIBLE_DEVICES)")
        self.index = index
        self._cuda = cuda
        self.device = cuda.Device(index)
        self.context = self.device.retain_primary_context()
        self._lock = threading.Lock()
        self._closed = False

    @property
    def name(self) -> str:
        return str(self.device.name())

    @property
    def compute_capability(self) -> str:
        major, minor = self.device.compute_capability()
        return f"{major}.{minor}"

    def __enter__(self) -> "PrimaryContext":
        if self._closed:
            raise EngineError(f"CUDA context of device {self.index} was closed")
        self.context.push()
        return self

    def __exit__(self, *exc) -> None:
        self._cuda.Context.pop()

    def create_stream(self):
        """A new non-default stream in this context (call inside ``with self:``)."""
        return self._cuda.Stream()

    def close(self) -> None:
        """Releases our retain of the primary context (idempotent). Free buffers first."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        try:
            self.context.detach()  # primary contexts: cuDevicePrimaryCtxRelease
        except Exception as exc:  # at interpreter exit the driver may be gone already
            log.debug("releasing the primary context of device %d: %s", self.index, exc)


# --- buffer planning (pure) ------------------------------------------------------------------

class BufferPlan(NamedTuple):
    """One IO tensor's allocation at the largest batch: ``(name, shape, dtype, nbytes)``."""

    name: str
    shape: Tuple[int, ...]
    dtype: np.dtype
    nbytes: int


DYNAMIC_BATCH = "batch"


def _spec_fields(spec) -> Tuple[str, Sequence[Union[int, str]], str]:
    if hasattr(spec, "name") and hasattr(spec, "shape"):  # manifest TensorSpec
        return spec.name, spec.shape, getattr(spec, "dtype", "float32")
    name, shape, *rest = spec
    return name, shape, (rest[0] if rest else "float32")


def plan_buffers(io_specs: Iterable, max_batch: int) -> List[BufferPlan]:
    """Buffers for the IO tensors ``io_specs`` (manifest ``TensorSpec`` or
    ``(name, shape[, dtype])`` tuples) sized for ``max_batch``: every ``"batch"`` axis becomes
    ``max_batch``; other named axes are refused (the manifest only exports a dynamic batch, so
    one would mean a graph the engine profile cannot bound). Order is kept.
    """
    if int(max_batch) != max_batch or max_batch < 1:
        raise EngineError(f"max_batch must be a positive integer, got {max_batch!r}")
    plans: List[BufferPlan] = []
    seen = set()
    for spec in io_specs:
        name, shape, dtype = _spec_fields(spec)
        if name in seen:
            raise EngineError(f"tensor '{name}' is listed twice")
        seen.add(name)
        dims = []
        for d in shape:
            if d == DYNAMIC_BATCH:
                dims.append(int(max_batch))
            elif isinstance(d, (int, np.integer)) and d >= 0:
                dims.append(int(d))
            else:
                raise EngineError(f"tensor '{name}' has axis {d!r} in shape {list(shape)}: only "
                                  f"'{DYNAMIC_BATCH}' may be dynamic")
        try:
            dt = np.dtype(dtype)
        except TypeError as exc:
            raise EngineError(f"tensor '{name}' has unknown dtype {dtype!r}") from exc
        shape_t = tuple(dims)
        plans.append(BufferPlan(name, shape_t, dt, int(math.prod(shape_t)) * dt.itemsize))
    return plans


def plan_stage_buffers(stage_spec, max_batch: int) -> List[BufferPlan]:
    """:func:`plan_buffers` over a manifest ``StageSpec``'s inputs then outputs."""
    return plan_buffers((*stage_spec.inputs, *stage_spec.outputs), max_batch)


def total_bytes(plans: Iterable[BufferPlan]) -> int:
    return sum(p.nbytes for p in plans)


# --- device arrays ---------------------------------------------------------------------------

class DeviceArray:
    """A view of device memory we own (an engine's output buffer), readable by torch/cupy/numba
    through ``__cuda_array_interface__`` (``torch.as_tensor(a, device="cuda")``).

    It aliases the backend's buffer: valid until the next ``run`` of the same stage.
    ``stream`` is the stream the data was written on (for consumers to order after it).
    """

    __slots__ = ("ptr", "shape", "dtype", "stream", "_owner")

    def __init__(self, ptr: int, shape: Tuple[int, ...], dtype, stream: Optional[int] = None,
                 owner=None):
        self.ptr = int(ptr)
        self.shape = tuple(int(s) for s in shape)
        self.dtype = np.dtype(dtype)
        self.stream = stream
        self._owner = owner  # keeps the allocation alive

    @property
    def nbytes(self) -> int:
        return int(math.prod(self.shape)) * self.dtype.itemsize

    @property
    def __cuda_array_interface__(self) -> dict:
        iface = {"shape": self.shape, "typestr": self.dtype.str, "data": (self.ptr, False),
                 "strides": None, "version": 3}
        if self.stream is not None:
            iface["stream"] = int(self.stream)
        return iface

    def __repr__(self) -> str:
        return f"DeviceArray(0x{self.ptr:x}, shape={self.shape}, dtype={self.dtype})"


def cuda_array_pointer(value, name: str = "array") -> Optional[Tuple[int, Tuple[int, ...],
                                                                     np.dtype, Optional[int]]]:
    """``(ptr, shape, dtype, stream)`` of a device array (anything with
    ``__cuda_array_interface__``: torch CUDA tensors, cupy, pycuda GPUArray, :class:`DeviceArray`);
    None for host arrays. Non-contiguous device arrays are refused (an engine reads dense NCHW).
    """
    iface = getattr(value, "__cuda_array_interface__", None)
    if iface is None:
        return None
    shape = tuple(int(s) for s in iface["shape"])
    dtype = np.dtype(iface["typestr"])
    strides = iface.get("strides")
    if strides is not None:
        expected, step = [], dtype.itemsize
        for s in reversed(shape):
            expected.append(step)
            step *= s
        if tuple(strides) != tuple(reversed(expected)) and math.prod(shape) > 1:
            raise EngineError(f"{name}: device array is not C-contiguous (strides {strides}); "
                              "call .contiguous() first")
    return int(iface["data"][0]), shape, dtype, iface.get("stream")
