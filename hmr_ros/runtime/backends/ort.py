"""ONNX Runtime backend: the exported stage graphs as ``InferenceSession``s (CPU, or CUDA where
this onnxruntime build has it). The CPU fallback everywhere, and the reference TensorRT engines
are compared against (same graphs)."""

from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence, Union

import numpy as np

from hmr_ros.export.errors import ExportError
from hmr_ros.export.manifest import Manifest

from ..errors import EngineError
from .base import BackendBase, specs_from_manifest

#: Providers 'auto' may pick, best first. TensorRT has its own backend (engine cache, one
#: stream shared with the kernels), so ORT's TensorRT EP is not chosen implicitly.
AUTO_PROVIDERS = ("CUDAExecutionProvider", "CPUExecutionProvider")


def load_manifest(model_dir: Union[str, Path], manifest: Optional[Manifest] = None) -> Manifest:
    """``manifest`` or ``model_dir``'s (verified: files, hashes, graph IO), as EngineError."""
    if manifest is not None:
        return manifest
    try:
        return Manifest.load(model_dir)
    except ExportError as exc:
        raise EngineError(str(exc)) from exc


def resolve_providers(providers: Union[str, Sequence[str]] = "auto") -> List[str]:
    """'auto' → CUDA (when this onnxruntime build lists it) then CPU; a list is checked against
    ``onnxruntime.get_available_providers()`` and refused with the available ones named."""
    import onnxruntime as ort

    available = ort.get_available_providers()
    if isinstance(providers, str):
        if providers != "auto":
            providers = [providers]
        else:
            return [p for p in AUTO_PROVIDERS if p in available] or ["CPUExecutionProvider"]
    providers = list(providers)
    missing = [p for p in providers if p not in available]
    if missing:
        hint = (" (pip install onnxruntime-gpu for CUDA)"
                if "CUDAExecutionProvider" in missing else "")
        raise EngineError(f"onnxruntime {ort.__version__} lacks {missing}{hint}; available: "
                          f"{available}")
    return providers


def session_options(threads: Optional[int] = None):
    """Session options of every hmr_ros ORT session (OrtVisHMR uses the same settings)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    # ORT's workers spin-wait after a run by default; the compiled kernels that run between
    # the stages then fight them for the same cores (seen as 10x stalls on 2 cores).
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if threads:
        opts.intra_op_num_threads = int(threads)
        opts.inter_op_num_threads = 1
    return opts


def open_sessions(model_dir: Union[str, Path], manifest: Manifest,
                  providers: Sequence[str], threads: Optional[int] = None) -> dict:
    """One ``InferenceSession`` per manifest stage."""
    import onnxruntime as ort

    opts = session_options(threads)
    sessions = {}
    for name in manifest.stages:
        path = manifest.stage_path(model_dir, name)
        try:
            sessions[name] = ort.InferenceSession(str(path), sess_options=opts,
                                                  providers=list(providers))
        except Exception as exc:  # onnxruntime raises its own exception types
            raise EngineError(f"{path}: onnxruntime cannot load the graph ({exc})") from exc
    return sessions


class OrtBackend(BackendBase):
    """Stage graphs on ONNX Runtime. Feeds: host arrays (device arrays are refused: use the
    TensorRT backend for device-resident data). Outputs: NumPy arrays."""

    name = "onnxruntime"

    def __init__(self, model_dir: Union[str, Path], manifest: Optional[Manifest] = None,
                 providers: Union[str, Sequence[str]] = "auto", threads: Optional[int] = None):
        self.model_dir = Path(model_dir)
        self.manifest = load_manifest(self.model_dir, manifest)
        super().__init__(specs_from_manifest(self.manifest))
        self.providers = resolve_providers(providers)
        self.sessions = open_sessions(self.model_dir, self.manifest, self.providers, threads)
        for stage, session in self.sessions.items():  # the graph's own output order
            have = {o.name for o in session.get_outputs()}
            want = set(self.output_names(stage))
            if not want <= have:
                raise EngineError(f"{self.model_dir}: {stage} graph lacks outputs "
                                  f"{sorted(want - have)}")

    def run(self, stage: str, feeds: Mapping[str, object]) -> Dict[str, np.ndarray]:
        self.check_feeds(stage, feeds)
        dtypes = {s.name: np.dtype(s.dtype) for s in self._stage(stage)[0]}
        host = {}
        for name, value in feeds.items():
            if hasattr(value, "__cuda_array_interface__"):
                raise EngineError(f"{stage}: input '{name}' is a device array; the onnxruntime "
                                  "backend takes host arrays (use the tensorrt backend)")
            host[name] = np.ascontiguousarray(value, dtype=dtypes[name])
        outputs = list(self.output_names(stage))
        try:
            values = self.sessions[stage].run(outputs, host)
        except Exception as exc:
            raise EngineError(f"{stage}: onnxruntime run failed ({exc})") from exc
        return dict(zip(outputs, values))

    def close(self) -> None:
        self.sessions = {}
        super().close()

    def __repr__(self) -> str:
        return f"OrtBackend({str(self.model_dir)!r}, providers={self.providers})"
