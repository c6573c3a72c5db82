"""TensorRT backend: one engine per stage from the engine cache, device-resident IO buffers,
one CUDA stream, pinned host buffers for uploads/downloads.

Written against the TensorRT 10.x/11.x named-tensor API (``num_io_tensors``,
``get_tensor_name``/``get_tensor_mode``, ``set_input_shape``, ``set_tensor_address``,
``execute_async_v3``) and ``pycuda.driver`` in the device's primary context (see
:mod:`hmr_ros.runtime.cuda_context` for why not ``pycuda.autoinit``).

Memory: every IO tensor gets one device buffer sized for ``max_batch`` (planned from the
manifest by :func:`~hmr_ros.runtime.cuda_context.plan_buffers`) and, for host IO, one pinned host
buffer of the same size; all are allocated once, at start-up, so ``run`` never allocates.

Streams: everything is enqueued on :attr:`TensorRTBackend.stream`. Kernels that consume device
outputs should run on that stream too (``stream_handle``; in torch
``torch.cuda.ExternalStream(backend.stream_handle)``), then no synchronisation is needed between
stages. Device inputs produced on another stream that their ``__cuda_array_interface__`` names
(CuPy, numba) are waited for with a context synchronise: correct, but slower than sharing the
stream. torch tensors do not name their stream (interface version 2): produce them on this
stream (:class:`~hmr_ros.runtime.placement.CudaPlacement` does) or synchronise first.

Outputs: NumPy copies by default (the stream is synchronised); with ``outputs_on_device=True``,
:class:`~hmr_ros.runtime.cuda_context.DeviceArray` views of the backend's buffers, valid until the
next ``run`` of the same stage, with no synchronisation.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Dict, Mapping, Optional, Union

import numpy as np

from hmr_ros.export.manifest import Manifest

from ..cuda_context import (DeviceArray, PrimaryContext, cuda_array_pointer, gpu_count,
                            import_pycuda, plan_buffers)
from ..engine_cache import (EngineCache, build_engine, import_tensorrt, make_key,
                            obtain_engine, trt_logger)
from ..errors import EngineError
from .base import BackendBase, specs_from_manifest
from .ort import load_manifest

log = logging.getLogger("hmr_ros.runtime")


class _Buffer:
    __slots__ = ("plan", "device", "host")

    def __init__(self, plan, device, host):
        self.plan, self.device, self.host = plan, device, host

    def host_view(self, shape) -> np.ndarray:
        n = int(np.prod(shape)) if len(shape) else 1
        return self.host.reshape(-1)[:n].reshape(shape)


class _Stage:
    __slots__ = ("name", "engine", "context", "inputs", "outputs", "buffers", "uploaded", "path")

    def __init__(self, name, engine, context, inputs, outputs, buffers, uploaded, path):
        self.name, self.engine, self.context = name, engine, context
        self.inputs, self.outputs, self.buffers = inputs, outputs, buffers
        self.uploaded, self.path = uploaded, path


class TensorRTBackend(BackendBase):
    """Stage engines of an exported model directory on GPU ``device``.

    ``precision`` fp16 | fp32; ``max_batch`` bounds the engine profile and the buffers;
    ``rebuild`` auto | never | always is the engine cache policy
    (:func:`~hmr_ros.runtime.engine_cache.obtain_engine`); ``cache_dir`` defaults to
    :func:`~hmr_ros.runtime.engine_cache.default_cache_dir`.
    """

    name = "tensorrt"

    def __init__(self, model_dir: Union[str, Path], manifest: Optional[Manifest] = None,
                 precision: str = "fp16", max_batch: int = 8,
                 cache_dir: Union[str, Path, None] = None, rebuild: str = "auto",
                 device: int = 0, opt_batch: Optional[int] = None,
                 outputs_on_device: bool = False, workspace_bytes: Optional[int] = None):
        trt = import_tensorrt()
        cuda = import_pycuda()
        if gpu_count() == 0:
            raise EngineError("the tensorrt backend needs an NVIDIA GPU and none is visible "
                              "(nvidia-smi, CUDA_VISIBLE_DEVICES); use the onnxruntime backend")
        self._trt, self._cuda = trt, cuda
        self.model_dir = Path(model_dir)
        self.manifest = load_manifest(self.model_dir, manifest)
        super().__init__(specs_from_manifest(self.manifest))
        if int(max_batch) < 1:
            raise EngineError(f"max_batch must be >= 1, got {max_batch}")
        self.precision, self.max_batch = precision, int(max_batch)
        self.outputs_on_device = bool(outputs_on_device)
        self.cache = EngineCache(cache_dir)
        self._stages: Dict[str, _Stage] = {}
        self._allocations = []
        self.stream = None
        self._ctx = PrimaryContext(device)
        try:
            with self._ctx:
                self.stream = cuda.Stream()
                self._runtime = trt.Runtime(trt_logger(trt))
                for stage in self.manifest.stages:
                    self._stages[stage] = self._load_stage(stage, rebuild, opt_batch,
                                                           workspace_bytes)
        except BaseException:
            self.close()
            raise

    # --- set-up ------------------------------------------------------------------------------

    def _load_stage(self, stage: str, rebuild: str, opt_batch, workspace_bytes) -> _Stage:
        trt, cuda = self._trt, self._cuda
        spec = self.manifest.stages[stage]
        key = make_key(spec.sha256, spec.inputs, precision=self.precision,
                       max_batch=self.max_batch, opt_batch=opt_batch,
                       tensorrt_version=trt.__version__, gpu_name=self._ctx.name,
                       compute_capability=self._ctx.compute_capability)
        onnx_path = self.manifest.stage_path(self.model_dir, stage)
        timing = self.cache.timing_cache_path(key.tensorrt_version, key.gpu_name,
                                              key.compute_capability)
        obtained = obtain_engine(
            self.cache, key,
            lambda: build_engine(onnx_path, key, timing_cache=timing,
                                 workspace_bytes=workspace_bytes),
            deserialize=self._runtime.deserialize_cuda_engine, rebuild=rebuild,
            label=f"{self.manifest.model}/{stage}")
        engine = obtained.engine

        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        inputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        outputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        want_in, want_out = self.input_names(stage), self.output_names(stage)
        if set(inputs) != set(want_in) or not set(want_out) <= set(outputs):
            raise EngineError(f"{obtained.path}: engine IO {inputs} -> {outputs} does not match "
                              f"the manifest's {list(want_in)} -> {list(want_out)}; rebuild it "
                              "(rebuild='always')")
        context = engine.create_execution_context()
        if context is None:
            raise EngineError(f"{stage}: TensorRT could not create an execution context (out of "
                              "GPU memory?)")
        buffers = {}
        for plan in plan_buffers((*spec.inputs, *spec.outputs), self.max_batch):
            dtype = np.dtype(trt.nptype(engine.get_tensor_dtype(plan.name)))
            if dtype != plan.dtype:
                raise EngineError(f"{stage}: engine tensor '{plan.name}' is {dtype}, manifest "
                                  f"says {plan.dtype}")
            device = cuda.mem_alloc(max(plan.nbytes, 1))
            self._allocations.append(device)
            host = cuda.pagelocked_empty(plan.shape, plan.dtype)
            self._allocations.append(host.base)  # HostAllocation: freed in close()
            buffers[plan.name] = _Buffer(plan, device, host)
            context.set_tensor_address(plan.name, int(device))
        log.info("tensorrt %s: %s (%s), %.1f MiB of IO buffers", stage, obtained.path.name,
                 key.summary(), sum(b.plan.nbytes for b in buffers.values()) / 2**20)
        return _Stage(stage, engine, context, tuple(want_in), tuple(want_out), buffers,
                      cuda.Event(), obtained.path)

    # --- running -----------------------------------------------------------------------------

    @property
    def stream_handle(self) -> int:
        """The CUDA stream (``cudaStream_t`` as int) every stage runs on."""
        return int(self.stream.handle)

    @property
    def device_index(self) -> int:
        return self._ctx.index

    def engine_path(self, stage: str) -> Path:
        self._stage(stage)
        return self._stages[stage].path

    def run(self, stage: str, feeds: Mapping[str, object],
            outputs_on_device: Optional[bool] = None) -> Dict[str, object]:
        batch = self.check_feeds(stage, feeds)
        on_device = self.outputs_on_device if outputs_on_device is None else outputs_on_device
        if batch > self.max_batch:
            raise EngineError(f"{stage}: batch {batch} exceeds max_batch {self.max_batch} the "
                              "engines were built for: split the batch, or build with a larger "
                              "--max-batch")
        st = self._stages[stage]
        if batch == 0:  # the profile starts at 1; nothing to compute
            return {n: np.zeros((0, *st.buffers[n].plan.shape[1:]), st.buffers[n].plan.dtype)
                    for n in st.outputs}
        cuda = self._cuda
        handle = self.stream_handle
        with self._ctx:
            st.uploaded.synchronize()  # the previous uploads have left the pinned buffers
            wait_for_producers = False
            for name in st.inputs:
                buf, value = st.buffers[name], feeds[name]
                dev = cuda_array_pointer(value, f"{stage} input '{name}'")
                if dev is not None:
                    ptr, shape, dtype, producer = dev
                    if dtype != buf.plan.dtype:
                        raise EngineError(f"{stage}: input '{name}' must be {buf.plan.dtype}, "
                                          f"got a device array of {dtype}")
                    st.context.set_tensor_address(name, ptr)
                    wait_for_producers |= producer not in (None, handle)
                else:
                    arr = np.asarray(value, dtype=buf.plan.dtype)
                    shape = arr.shape
                    host = buf.host_view(shape)
                    np.copyto(host, arr)
                    cuda.memcpy_htod_async(buf.device, host, self.stream)
                    st.context.set_tensor_address(name, int(buf.device))
                if not st.context.set_input_shape(name, tuple(shape)):
                    raise EngineError(f"{stage}: TensorRT refused shape {tuple(shape)} for "
                                      f"'{name}' (profile: batch 1..{self.max_batch})")
            st.uploaded.record(self.stream)
            if wait_for_producers:
                cuda.Context.synchronize()
            if not st.context.execute_async_v3(handle):
                raise EngineError(f"{stage}: TensorRT execution failed (see the TensorRT log)")
            result, views = {}, {}
            for name in st.outputs:
                buf = st.buffers[name]
                shape = tuple(int(d) for d in st.context.get_tensor_shape(name))
                if on_device:
                    result[name] = DeviceArray(int(buf.device), shape, buf.plan.dtype,
                                               stream=handle, owner=buf.device)
                else:
                    views[name] = buf.host_view(shape)
                    cuda.memcpy_dtoh_async(views[name], buf.device, self.stream)
            if views:
                self.stream.synchronize()
                result.update({n: v.copy() for n, v in views.items()})  # buffers are reused
        return result

    def synchronize(self) -> None:
        with self._ctx:
            self.stream.synchronize()

    # --- teardown ----------------------------------------------------------------------------

    def close(self) -> None:
        """Frees engines, buffers and the stream inside the context, then releases it."""
        ctx = getattr(self, "_ctx", None)
        if ctx is None or getattr(self, "_closed", False):
            super().close()
            return
        try:
            with ctx:
                if self.stream is not None:
                    self.stream.synchronize()
                for st in self._stages.values():  # contexts before engines before memory
                    st.context = None
                    st.engine = None
                self._stages = {}
                self._runtime = None
                for alloc in self._allocations:  # DeviceAllocation / HostAllocation
                    alloc.free()
                self._allocations = []
                self.stream = None
        finally:
            ctx.close()
            self._ctx = None
            super().close()

    def __repr__(self) -> str:
        return (f"TensorRTBackend({str(self.model_dir)!r}, precision={self.precision!r}, "
                f"max_batch={self.max_batch})")
