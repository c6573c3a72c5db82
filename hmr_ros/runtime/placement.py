"""Where the runner's arrays live between stages: the host (NumPy) or one CUDA stream.

On a GPU backend the stage outputs, the kernels' inputs and outputs and the merged mesh stay in
device memory, everything is enqueued on the backend's stream in order, and the host sees the
data once, at the end of the frame (one synchronisation, pinned buffers). Device arrays are torch
CUDA tensors: the compiled kernels allocate their outputs with the input's library and launch on
torch's *current* stream, so making the backend's stream current (``torch.cuda.ExternalStream``)
puts the kernels on the very stream the TensorRT engines run on.

:class:`HostPlacement` is the same interface on NumPy (the CPU path), so the runner has one code
path; :func:`array_ops` gives the handful of array operations the merge needs on either.
"""

from __future__ import annotations

import contextlib
import logging
import time
from typing import Dict, Optional

import numpy as np

from .errors import EngineError

__all__ = ["HostPlacement", "CudaPlacement", "choose_placement", "array_ops"]

log = logging.getLogger("hmr_ros.runtime")


class HostPlacement:
    """NumPy arrays on the host; wall-clock timing."""

    name = "host"
    device_resident = False

    def scope(self):
        return contextlib.nullcontext()

    def upload(self, array: np.ndarray, name: str = "", dtype=np.float32):
        return np.ascontiguousarray(array, dtype=dtype)

    def adopt(self, value):
        """A backend output as this placement's array type (NumPy, C-contiguous float32)."""
        value = np.asarray(value)
        return np.ascontiguousarray(value, dtype=np.float32) if value.dtype.kind == "f" else value

    def download(self, arrays: Dict[str, object]) -> Dict[str, object]:
        return dict(arrays)

    def stopwatch(self) -> "_WallClock":
        return _WallClock()


class _WallClock:
    def __init__(self):
        self._last = time.perf_counter()
        self.times: Dict[str, float] = {}

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.times[name] = now - self._last
        self._last = now

    def result(self) -> Dict[str, float]:
        return dict(self.times)


class CudaPlacement:
    """torch CUDA tensors on one stream: ``stream_handle`` (a ``cudaStream_t`` as int, e.g. the
    TensorRT backend's) or, with None, torch's current stream of ``device``."""

    name = "cuda"
    device_resident = True

    def __init__(self, device: int = 0, stream_handle: Optional[int] = None):
        try:
            import torch
        except ImportError as exc:  # pragma: no cover - torch is a dependency
            raise EngineError("device-resident inference needs torch (CUDA tensors carry the "
                              "data between stages)") from exc
        if not torch.cuda.is_available():
            raise EngineError("device-resident inference needs a CUDA build of torch and a GPU; "
                              "this torch has no CUDA (use the host path: device_resident=False)")
        self._torch = torch
        self.device = torch.device("cuda", int(device))
        self.stream = (torch.cuda.ExternalStream(int(stream_handle), device=self.device)
                       if stream_handle is not None else torch.cuda.current_stream(self.device))
        self._pinned: Dict[tuple, object] = {}
        self._uploaded: Dict[str, object] = {}  # staging buffer -> event of its last H2D copy

    def scope(self):
        """Makes the stream current: kernels and torch ops in the block run on it."""
        torch = self._torch
        stack = contextlib.ExitStack()
        stack.enter_context(torch.cuda.device(self.device))
        stack.enter_context(torch.cuda.stream(self.stream))
        return stack

    def _pinned_buffer(self, key, shape, dtype):
        torch = self._torch
        buf = self._pinned.get(key)
        if buf is None or buf.numel() < int(np.prod(shape)) or buf.dtype != dtype:
            buf = torch.empty(int(np.prod(shape)) or 1, dtype=dtype, pin_memory=True)
            self._pinned[key] = buf
        return buf[: int(np.prod(shape))].view(tuple(shape))

    def upload(self, array, name: str = "", dtype=np.float32):
        """Host array -> device tensor through a pinned staging buffer of its own (``name``:
        one per input, reused every frame; async on the stream); device arrays are adopted."""
        torch = self._torch
        if isinstance(array, torch.Tensor) or hasattr(array, "__cuda_array_interface__"):
            return self.adopt(array)
        host = np.ascontiguousarray(array, dtype=dtype)
        tdtype = torch.from_numpy(host[:0].copy()).dtype
        done = self._uploaded.get(name)
        if done is not None:  # the previous copy out of this staging buffer must have finished
            done.synchronize()
        staging = self._pinned_buffer(("up", name), host.shape, tdtype)
        staging.copy_(torch.from_numpy(host))
        out = torch.empty(host.shape, dtype=tdtype, device=self.device)
        out.copy_(staging, non_blocking=True)
        event = torch.cuda.Event()
        event.record(self.stream)
        self._uploaded[name] = event
        return out

    def adopt(self, value):
        """A backend output (DeviceArray, torch tensor, any ``__cuda_array_interface__``) as a
        torch CUDA tensor, without a copy; the stream waits for the array's producer stream
        when the interface names another one (torch itself ignores that field)."""
        torch = self._torch
        if isinstance(value, torch.Tensor) and value.is_cuda:
            return value.contiguous()
        if hasattr(value, "__cuda_array_interface__"):
            producer = value.__cuda_array_interface__.get("stream")
            if producer not in (None, self.stream.cuda_stream):  # written on another stream
                self.stream.wait_stream(torch.cuda.ExternalStream(int(producer),
                                                                  device=self.device))
            return torch.as_tensor(value, device=self.device)
        if getattr(value, "size", None) == 0:  # batch 0 (TensorRT answers with host zeros)
            return self.upload(np.asarray(value), "empty", dtype=np.asarray(value).dtype)
        raise EngineError(f"device-resident inference got a host array "
                          f"({type(value).__name__}) from the backend: it must return device "
                          "arrays (TensorRT: outputs_on_device=True)")

    def download(self, arrays: Dict[str, object]) -> Dict[str, object]:
        """Every device tensor to NumPy: async copies into pinned buffers, one stream sync."""
        torch = self._torch
        staged = {}
        for name, value in arrays.items():
            if isinstance(value, torch.Tensor):
                host = self._pinned_buffer(("down", name), tuple(value.shape), value.dtype)
                host.copy_(value, non_blocking=True)
                staged[name] = host
        self.stream.synchronize()
        out = dict(arrays)
        for name, host in staged.items():
            out[name] = host.numpy().copy()  # the pinned buffers are reused next frame
        return out

    def stopwatch(self) -> "_CudaEvents":
        return _CudaEvents(self._torch, self.stream)


class _CudaEvents:
    """Stage times from CUDA events on the stream: read after the frame's one synchronisation,
    so timing does not add host round trips."""

    def __init__(self, torch, stream):
        self._torch, self._stream = torch, stream
        self._events = [("start", self._record())]

    def _record(self):
        event = self._torch.cuda.Event(enable_timing=True)
        event.record(self._stream)
        return event

    def lap(self, name: str) -> None:
        self._events.append((name, self._record()))

    def result(self) -> Dict[str, float]:
        self._events[-1][1].synchronize()
        return {name: prev.elapsed_time(event) * 1e-3
                for (_, prev), (name, event) in zip(self._events, self._events[1:])}


def choose_placement(backend, device_resident="auto"):
    """The placement for ``backend``: ``auto`` keeps data on the GPU when the backend can hand
    over device outputs (TensorRT; the torch backend on CUDA), else the host.
    ``device_resident=True`` insists (a clear error when impossible); False forces the host."""
    if device_resident not in ("auto", True, False):
        raise EngineError(f"device_resident must be 'auto', True or False, got "
                          f"{device_resident!r}")
    if device_resident is False:
        return HostPlacement()
    name = getattr(backend, "name", "?")
    try:
        if name == "tensorrt":
            return CudaPlacement(backend.device_index, backend.stream_handle)
        if name == "torch" and getattr(backend, "device", None) is not None \
                and backend.device.type == "cuda":
            return CudaPlacement(backend.device.index or 0)
    except EngineError as exc:  # e.g. a CPU-only torch next to TensorRT
        if device_resident is True:
            raise
        log.warning("stage outputs go through the host: %s", exc)
        return HostPlacement()
    if device_resident is True:
        raise EngineError(f"the {name} backend cannot keep stage outputs on the GPU "
                          "(device-resident inference needs the tensorrt backend, or the torch "
                          "backend on CUDA)")
    return HostPlacement()


class _NumpyOps:
    @staticmethod
    def arange(n, like):
        return np.arange(n)

    @staticmethod
    def full(n, value, like):
        return np.full(n, value, np.int64)

    @staticmethod
    def ones_like(x):
        return np.ones_like(x)

    @staticmethod
    def zeros_like(x):
        return np.zeros_like(x)

    @staticmethod
    def contiguous(x):
        return np.ascontiguousarray(x)

    @staticmethod
    def int64(x):
        return np.asarray(x).astype(np.int64)


class _TorchOps:
    def __init__(self, torch):
        self.torch = torch

    def arange(self, n, like):
        return self.torch.arange(n, device=like.device)

    def full(self, n, value, like):
        return self.torch.full((n,), value, dtype=self.torch.int64, device=like.device)

    def ones_like(self, x):
        return self.torch.ones_like(x)

    def zeros_like(self, x):
        return self.torch.zeros_like(x)

    @staticmethod
    def contiguous(x):
        return x.contiguous()

    def int64(self, x):
        return x.to(self.torch.int64)


def array_ops(x):
    """The merge's array operations for ``x``'s kind: NumPy, or torch (CUDA) tensors."""
    if isinstance(x, np.ndarray):
        return _NumpyOps
    if type(x).__module__.split(".")[0] == "torch":
        import torch

        return _TorchOps(torch)
    raise EngineError(f"expected NumPy arrays or torch tensors, got {type(x).__name__}")
