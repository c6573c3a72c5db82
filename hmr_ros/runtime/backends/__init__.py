"""Inference backends behind one interface (:class:`Backend`): ONNX Runtime, TensorRT, torch.

``select_backend("auto", model_dir)`` picks TensorRT when ``tensorrt`` and ``pycuda`` are
installed and a CUDA GPU is visible, ONNX Runtime otherwise, and says which and why in the log
(logger ``hmr_ros.runtime``). Asking for a backend that cannot run here raises
:class:`~hmr_ros.runtime.errors.EngineError` with the fix.

Each backend module imports its heavy library lazily, so importing this package is cheap and
works without TensorRT, pycuda or a GPU.
"""

from __future__ import annotations

import importlib.util
import inspect
import logging
from pathlib import Path
from typing import Dict, Optional, Type, Union

from ..engine_cache import TENSORRT_HINT
from ..errors import EngineError
from .base import Backend, BackendBase
from .ort import OrtBackend, resolve_providers, session_options
from .tensorrt import TensorRTBackend
from .torch_backend import TorchBackend

log = logging.getLogger("hmr_ros.runtime")

BACKENDS: Dict[str, Type] = {
    "onnxruntime": OrtBackend,
    "tensorrt": TensorRTBackend,
    "torch": TorchBackend,
}
ALIASES = {"ort": "onnxruntime", "trt": "tensorrt", "pytorch": "torch"}
INSTALL_HINTS = {
    "onnxruntime": "onnxruntime is not installed: pip install onnxruntime "
                   "(or onnxruntime-gpu for CUDA)",
    "tensorrt": TENSORRT_HINT,
    "torch": "torch is not installed: pip install torch",
}

__all__ = ["ALIASES", "BACKENDS", "Backend", "BackendBase", "OrtBackend", "TensorRTBackend",
           "TorchBackend", "auto_backend_name", "backend_available", "resolve_providers",
           "select_backend", "session_options"]


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def backend_available(name: str) -> Optional[str]:
    """None when backend ``name`` can run here, else the reason (with the fix)."""
    name = ALIASES.get(name, name)
    if name == "tensorrt":
        if not _installed("tensorrt"):
            return TENSORRT_HINT
        if not _installed("pycuda"):
            from ..cuda_context import PYCUDA_HINT

            return PYCUDA_HINT
        from ..cuda_context import gpu_available

        if not gpu_available():
            return ("tensorrt is installed but no CUDA GPU is visible (nvidia-smi, "
                    "CUDA_VISIBLE_DEVICES); use the onnxruntime backend")
        return None
    module = {"onnxruntime": "onnxruntime", "torch": "torch"}.get(name)
    if module is None:
        return f"unknown backend '{name}'"
    return None if _installed(module) else INSTALL_HINTS[name]


def auto_backend_name() -> str:
    """'tensorrt' when it can run here (tensorrt + pycuda + a GPU), else 'onnxruntime'."""
    why_not = backend_available("tensorrt")
    if why_not is None:
        log.info("backend auto: tensorrt (TensorRT, pycuda and a CUDA GPU are present)")
        return "tensorrt"
    log.info("backend auto: onnxruntime (%s)", why_not.split(":")[0])
    return "onnxruntime"


def _accepted(cls) -> set:
    return set(inspect.signature(cls.__init__).parameters) - {"self"}


def select_backend(name: str = "auto", model_dir: Union[str, Path, None] = None, *,
                   manifest=None, model=None, **options) -> Backend:
    """The backend ``name`` (auto | onnxruntime | tensorrt | torch, or ort/trt) for an exported
    ``model_dir`` (torch: an in-memory ``model``). ``options`` go to the backend's constructor;
    options of *other* backends are ignored (so one configuration can carry ``precision`` and
    ``threads`` whatever ``auto`` picks), unknown ones are an error."""
    requested = name
    name = ALIASES.get(name, name)
    if name == "auto":
        name = auto_backend_name()
    if name not in BACKENDS:
        raise EngineError(f"unknown backend '{requested}': use auto or one of "
                          f"{', '.join(BACKENDS)}")
    why_not = backend_available(name)
    if why_not is not None:
        raise EngineError(f"backend '{name}' cannot run here: {why_not}")
    cls = BACKENDS[name]
    known = set().union(*(_accepted(c) for c in BACKENDS.values()))
    unknown = sorted(set(options) - known)
    if unknown:
        raise EngineError(f"unknown backend option(s) {unknown}")
    mine = _accepted(cls)
    ignored = sorted(set(options) - mine)
    if ignored:
        log.debug("backend %s ignores options %s", name, ignored)
    kwargs = {k: v for k, v in options.items() if k in mine}
    if name == "torch":
        if model is None:
            raise EngineError("the torch backend runs an in-memory model: pass model=VisHMR "
                              "(e.g. hmr_ros.models.checkpoint.load_checkpoint(path))")
        if manifest is None and model_dir is not None:  # the export of this model, for runners
            from .ort import load_manifest

            manifest = load_manifest(model_dir)
        return cls(model, manifest=manifest, **kwargs)
    if model_dir is None:
        raise EngineError(f"backend '{name}' needs model_dir (an exported model directory)")
    return cls(model_dir, manifest=manifest, **kwargs)
