"""The manifest written next to exported stage graphs: what a runtime needs to run them.

``manifest.json`` names each stage's ONNX file (with its sha256, so a stale or swapped file is
caught), the graphs' input/output names and shapes (``"batch"`` for the dynamic axis),
preprocessing (crop size, mean/std, channel order), body-model requirements and the model
configuration. Loading validates it against the graphs on disk.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Dict, List, Tuple, Union

from .errors import ExportError

FORMAT_VERSION = 1
MANIFEST_NAME = "manifest.json"


@dataclass(frozen=True)
class TensorSpec:
    name: str
    shape: Tuple[Union[int, str], ...]
    dtype: str = "float32"


@dataclass(frozen=True)
class StageSpec:
    file: str
    sha256: str
    inputs: Tuple[TensorSpec, ...]
    outputs: Tuple[TensorSpec, ...]


@dataclass(frozen=True)
class Manifest:
    model: str
    stages: Dict[str, StageSpec]
    preprocessing: dict
    body: dict
    heads: dict
    config: dict = field(default_factory=dict)
    opset: int = 17
    format_version: int = FORMAT_VERSION

    # --- IO ------------------------------------------------------------------------------------

    def save(self, directory: Union[str, Path]) -> Path:
        path = Path(directory) / MANIFEST_NAME
        path.write_text(json.dumps(asdict(self), indent=2) + "\n")
        return path

    @classmethod
    def load(cls, directory: Union[str, Path], verify: bool = True) -> "Manifest":
        """Reads ``DIR/manifest.json``; with ``verify`` also checks files, hashes and graph IO."""
        directory = Path(directory)
        path = directory / MANIFEST_NAME
        if not path.is_file():
            raise ExportError(f"no {MANIFEST_NAME} in {directory}: export the model first "
                              "(hmr-ros export --model vishmr --checkpoint CKPT --out DIR)")
        try:
            raw = json.loads(path.read_text())
            if raw.get("format_version") != FORMAT_VERSION:
                raise ExportError(f"{path}: format_version {raw.get('format_version')} is not "
                                  f"{FORMAT_VERSION}; re-export the model with this hmr_ros")
            stages = {
                name: StageSpec(
                    file=s["file"], sha256=s["sha256"],
                    inputs=tuple(TensorSpec(t["name"], tuple(t["shape"]), t["dtype"])
                                 for t in s["inputs"]),
                    outputs=tuple(TensorSpec(t["name"], tuple(t["shape"]), t["dtype"])
                                  for t in s["outputs"]))
                for name, s in raw["stages"].items()}
            manifest = cls(model=raw["model"], stages=stages,
                           preprocessing=raw["preprocessing"], body=raw["body"],
                           heads=raw["heads"], config=raw.get("config", {}),
                           opset=raw["opset"], format_version=raw["format_version"])
        except (KeyError, TypeError, ValueError) as exc:
            if isinstance(exc, ExportError):
                raise
            raise ExportError(f"{path}: malformed manifest ({type(exc).__name__}: {exc})") from exc
        if verify:
            manifest.verify(directory)
        return manifest

    # --- checks --------------------------------------------------------------------------------

    def verify(self, directory: Union[str, Path]) -> None:
        """Every stage file exists, matches its hash, and has the inputs/outputs listed."""
        import onnx

        directory = Path(directory)
        for name, stage in self.stages.items():
            path = directory / stage.file
            if not path.is_file():
                raise ExportError(f"{directory / MANIFEST_NAME}: stage '{name}' file "
                                  f"{stage.file} is missing")
            digest = sha256_of(path)
            if digest != stage.sha256:
                raise ExportError(f"{path}: sha256 {digest[:12]}… does not match the manifest "
                                  f"({stage.sha256[:12]}…): the graph was replaced or is stale")
            graph = onnx.load(str(path), load_external_data=False).graph
            for kind, specs, values in (("input", stage.inputs, graph.input),
                                        ("output", stage.outputs, graph.output)):
                actual = {v.name: _shape_of(v) for v in values}
                for spec in specs:
                    if spec.name not in actual:
                        raise ExportError(f"{path}: manifest {kind} '{spec.name}' is not in the "
                                          f"graph (graph has {sorted(actual)})")
                    if len(actual[spec.name]) != len(spec.shape) or any(
                            isinstance(a, int) and isinstance(b, int) and a != b
                            for a, b in zip(actual[spec.name], spec.shape)):
                        raise ExportError(f"{path}: {kind} '{spec.name}' has shape "
                                          f"{actual[spec.name]} in the graph but "
                                          f"{list(spec.shape)} in the manifest")

    def stage_path(self, directory: Union[str, Path], name: str) -> Path:
        if name not in self.stages:
            raise ExportError(f"manifest has no stage '{name}' (has {sorted(self.stages)})")
        return Path(directory) / self.stages[name].file


def sha256_of(path: Union[str, Path]) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _shape_of(value_info) -> List[Union[int, str]]:
    dims = value_info.type.tensor_type.shape.dim
    return [d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in dims]
