"""The one interface every inference backend implements, and the checks they share.

A backend runs the *stage graphs* of an exported model (``stage_a``, ``stage_b`` for VisHMR) by
name, with the tensor names and shapes of the manifest; kernels between stages stay outside
(hmr_ros.kernels). Feeds are NumPy arrays (any backend) or device arrays exposing
``__cuda_array_interface__`` (TensorRT; torch CUDA tensors for the torch backend); outputs are
NumPy arrays unless a backend is asked to leave them on the device.
"""

from __future__ import annotations

from typing import Dict, Mapping, Protocol, Sequence, Tuple, runtime_checkable

import numpy as np

from ..errors import EngineError

Array = object  # np.ndarray, or a device array (``__cuda_array_interface__``)


@runtime_checkable
class Backend(Protocol):
    """Runs named stage graphs. ``stages`` lists them in pipeline order."""

    name: str

    @property
    def stages(self) -> Tuple[str, ...]: ...

    def input_names(self, stage: str) -> Tuple[str, ...]: ...

    def output_names(self, stage: str) -> Tuple[str, ...]: ...

    def run(self, stage: str, feeds: Mapping[str, Array]) -> Dict[str, Array]: ...

    def close(self) -> None: ...


class BackendBase:
    """Shared plumbing: stage/feeds validation against manifest specs, context manager."""

    name = "?"

    def __init__(self, specs: Mapping[str, Tuple[Sequence, Sequence]]):
        """``specs``: ``{stage: (input TensorSpecs, output TensorSpecs)}`` in pipeline order."""
        self._specs = dict(specs)
        self._closed = False

    @property
    def stages(self) -> Tuple[str, ...]:
        return tuple(self._specs)

    def _stage(self, stage: str):
        if self._closed:
            raise EngineError(f"{self.name} backend is closed")
        try:
            return self._specs[stage]
        except KeyError:
            raise EngineError(f"{self.name} backend has no stage '{stage}' (has "
                              f"{', '.join(self._specs)})") from None

    def input_names(self, stage: str) -> Tuple[str, ...]:
        return tuple(s.name for s in self._stage(stage)[0])

    def output_names(self, stage: str) -> Tuple[str, ...]:
        return tuple(s.name for s in self._stage(stage)[1])

    def check_feeds(self, stage: str, feeds: Mapping[str, Array]) -> int:
        """Names, ranks, fixed axes and a common batch of ``feeds``; returns the batch size."""
        inputs = self._stage(stage)[0]
        names = {s.name for s in inputs}
        missing = [n for n in self.input_names(stage) if n not in feeds]
        extra = sorted(set(feeds) - names)
        if missing or extra:
            raise EngineError(f"{stage}: feeds must be exactly {list(self.input_names(stage))}"
                              + (f"; missing {missing}" if missing else "")
                              + (f"; unexpected {extra}" if extra else ""))
        batch = None
        for spec in inputs:
            shape = tuple(int(d) for d in _shape_of(feeds[spec.name]))
            want = tuple(spec.shape)
            if len(shape) != len(want) or any(isinstance(w, int) and w != s
                                              for w, s in zip(want, shape)):
                raise EngineError(f"{stage}: input '{spec.name}' must have shape "
                                  f"{_fmt(want)}, got {shape}")
            for w, s in zip(want, shape):
                if w == "batch":
                    if batch is not None and s != batch:
                        raise EngineError(f"{stage}: inputs disagree on the batch size "
                                          f"({batch} vs {s} for '{spec.name}')")
                    batch = s
        return 0 if batch is None else batch

    def close(self) -> None:
        self._closed = True

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(stages={list(self.stages)})"


def _shape_of(value) -> Tuple[int, ...]:
    iface = getattr(value, "__cuda_array_interface__", None)
    if iface is not None:
        return tuple(iface["shape"])
    shape = getattr(value, "shape", None)
    return tuple(shape) if shape is not None else np.shape(value)


def _fmt(shape) -> str:
    return "(" + ", ".join("B" if d == "batch" else str(d) for d in shape) + ")"


def specs_from_manifest(manifest) -> Dict[str, Tuple[tuple, tuple]]:
    return {name: (stage.inputs, stage.outputs) for name, stage in manifest.stages.items()}
