"""Every parameter of the node, declared in one place: name, type, default, range, description.

The table drives the declaration on the transport (`declare`), the validation (bad values are
refused at start with a message naming the parameter), the README table (`markdown_table`) and
the YAML file format shared by ``hmr-ros node --params`` and ``ros2 launch``
(``<node>: {ros__parameters: {...}}``, ``/**`` matching any node).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

__all__ = ["Param", "PARAMS", "NodeConfig", "ParameterError", "declare", "read_params_yaml",
           "markdown_table", "default_model_dir"]

_MERGE_MODES = ("visible", "global", "ks_highest", "ks_matched")


class ParameterError(ValueError):
    """A parameter value the node cannot run with; the message names the parameter."""


@dataclass(frozen=True)
class Param:
    name: str
    default: Any
    description: str
    choices: Optional[Tuple[Any, ...]] = None
    minimum: Optional[float] = None
    maximum: Optional[float] = None

    def check(self, value: Any) -> Any:
        if self.choices is not None and value not in self.choices:
            raise ParameterError(f"parameter '{self.name}': {value!r} is not one of "
                                 f"{', '.join(map(str, self.choices))}")
        if self.minimum is not None and value < self.minimum:
            raise ParameterError(f"parameter '{self.name}': {value} is below {self.minimum}")
        if self.maximum is not None and value > self.maximum:
            raise ParameterError(f"parameter '{self.name}': {value} is above {self.maximum}")
        return value

    @property
    def range_text(self) -> str:
        if self.choices is not None:
            return " / ".join(map(str, self.choices))
        if self.minimum is not None or self.maximum is not None:
            lo = "" if self.minimum is None else f"{self.minimum:g}"
            hi = "" if self.maximum is None else f"{self.maximum:g}"
            return f"[{lo}, {hi}]"
        return ""


#: bundled models, preferred first: the keypoint-conditioned default, then the image-only
#: (paper-faithful) light VisHMR
BUNDLED_MODELS = ("vishmr_kp_light", "vishmr_light")
#: the regressors the node runs (``model`` parameter), and each one's bundled models in order
MODEL_FAMILIES = {"vishmr": BUNDLED_MODELS, "ochmr": ("ochmr_light",),
                  "imphmr": ("imphmr_light",), "instancehmr": ("instancehmr_light",),
                  "dpmesh": ("dpmesh_tiny",)}


def bundled_model_dir(family: str) -> Optional[str]:
    """The first bundled model of ``family`` that is present (source tree or install), or None."""
    here = Path(__file__).resolve()
    roots = [here.parents[2] / "models", Path(sys.prefix) / "share" / "hmr_ros" / "models"]
    for name in MODEL_FAMILIES[family]:
        for root in roots:
            if (root / name / "manifest.json").is_file():
                return str(root / name)
    return None


def default_model_dir() -> str:
    """The bundled model: the source tree's ``models/<name>``, else the installed
    ``share/hmr_ros/models/<name>`` (pip or colcon), for the names of ``BUNDLED_MODELS`` in
    order (the first name's source-tree path when none is present)."""
    return bundled_model_dir("vishmr") or str(
        Path(__file__).resolve().parents[2] / "models" / BUNDLED_MODELS[0])


PARAMS: Tuple[Param, ...] = (
    # model and runtime
    Param("model", "auto", "regressor: auto = whatever model_dir holds; vishmr, ochmr, imphmr, "
          "instancehmr (bottom-up: no person detector needed) or dpmesh checks model_dir holds "
          "that model, or with an empty model_dir picks its bundled one",
          choices=("auto",) + tuple(MODEL_FAMILIES)),
    Param("model_dir", "", "exported model folder (manifest.json + stage graphs); empty = the "
          "bundled model of 'model' (auto: the keypoint-conditioned light VisHMR)"),
    Param("backend", "auto", "inference backend; auto = TensorRT with a GPU, else ONNX Runtime",
          choices=("auto", "onnxruntime", "tensorrt", "torch")),
    Param("engine_cache_dir", "", "TensorRT engine cache folder; empty = the default cache"),
    Param("precision", "fp16", "TensorRT engine precision", choices=("fp16", "fp32")),
    Param("threads", 0, "ONNX Runtime intra-op threads; 0 = ONNX Runtime's choice",
          minimum=0, maximum=256),
    Param("body_model", "procedural", "'procedural' (licence-free, what the bundled model was "
          "trained on) or the path of your SMPL .npz/.pkl"),
    Param("person_detector", "auto", "where people come from without a detections topic: "
          "blazepose (2D keypoints too), none (the whole frame is one person), auto = blazepose "
          "when installed (hmr-ros detector fetch)", choices=("auto", "blazepose", "none")),
    Param("detector_model_dir", "", "converted BlazePose folder; empty = the fetched default"),
    Param("detector_every", 3, "frames between detector runs while people are tracked by their "
          "keypoints (1 = every frame)", minimum=1, maximum=1000),
    Param("detector_tile", 0, "also run the detector on tiles of this many pixels, for people "
          "smaller than about a sixth of the frame; 0 = whole frame only",
          minimum=0, maximum=16384),
    Param("detector_min_score", 0.5, "detector score to start looking at a person",
          minimum=0.0, maximum=1.0),
    # pipeline
    Param("max_persons", 5, "people processed per frame (highest scores first)",
          minimum=1, maximum=64),
    Param("score_threshold", 0.5, "detections below this score are ignored",
          minimum=0.0, maximum=1.0),
    Param("merge_mode", "ks_matched", "VisHMR merge of visible and global branches (paper "
          "table 2)", choices=_MERGE_MODES),
    Param("track", True, "keep person ids across frames (REP-155 body ids)"),
    Param("track_min_hits", 2, "frames a new person must be seen before it gets an id",
          minimum=1, maximum=100),
    Param("track_max_age", 15, "frames a person may be missed before its id is dropped",
          minimum=0, maximum=1000),
    Param("refine_iterations", 5, "Levenberg-Marquardt steps fitting each body to its detected "
          "keypoints (pose prior: the regressor's answer); 0 = off", minimum=0, maximum=50),
    Param("refine_prior", 0.05, "how strongly refinement keeps the regressor's rotations",
          minimum=0.0, maximum=100.0),
    Param("smooth", False, "One-Euro smoothing of pose and translation per track"),
    Param("smooth_min_cutoff", 1.0, "One-Euro minimum cutoff (Hz): lower = smoother",
          minimum=1e-3, maximum=100.0),
    Param("smooth_beta", 0.05, "One-Euro speed coefficient: higher = less lag on fast motion",
          minimum=0.0, maximum=10.0),
    # inputs
    Param("image_topic", "image", "camera image topic (remap it, or set it here)"),
    Param("camera_info_topic", "camera_info", "camera_info topic"),
    Param("compressed", False, "subscribe to sensor_msgs/CompressedImage on "
          "<image_topic>/compressed instead of a raw Image"),
    Param("detections_topic", "", "vision_msgs/Detection2DArray of person boxes matched to the "
          "image by stamp; empty = no external detections (person_detector finds people)"),
    Param("detection_classes", "person", "comma-separated class ids taken from detections; "
          "empty = every class"),
    Param("input_qos", "sensor_data", "QoS of the inputs: sensor_data, default, or e.g. "
          "reliable,keep_last,5"),
    # outputs
    Param("output_qos", "default", "QoS of the outputs (faces are always transient local)"),
    Param("publish_visibility", True, "publish /human_mesh/visibility"),
    Param("publish_rep155", True, "publish REP-155 /humans/bodies/* topics"),
    Param("publish_tf", True, "publish body_<id> and per-joint TF frames"),
    Param("publish_markers", True, "publish RViz markers (built only while subscribed)"),
    Param("publish_overlay", True, "publish the overlay image (drawn only while subscribed)"),
    Param("diagnostics_period", 1.0, "seconds between /diagnostics messages",
          minimum=0.1, maximum=60.0),
)
_BY_NAME = {p.name: p for p in PARAMS}


@dataclass(frozen=True)
class NodeConfig:
    """The validated parameter values (attribute per parameter)."""

    values: Dict[str, Any]

    def __getattr__(self, name: str) -> Any:
        try:
            return self.values[name]
        except KeyError:
            raise AttributeError(name) from None


def declare(transport: Any, overrides: Optional[Dict[str, Any]] = None) -> NodeConfig:
    """Declare every parameter on ``transport`` and validate the values it reports."""
    values = {}
    for p in PARAMS:
        try:
            value = transport.declare_parameter(p.name, p.default, p.description)
        except ValueError as exc:
            raise ParameterError(str(exc)) from None
        except RuntimeError as exc:  # TransportError: wrong type for the default
            raise ParameterError(str(exc)) from None
        values[p.name] = p.check(value)
    unknown = getattr(transport, "undeclared_parameters", lambda: [])()
    if unknown:
        raise ParameterError(f"unknown parameter(s) {unknown}; known: "
                             f"{', '.join(sorted(_BY_NAME))}")
    family = values["model"]
    if not values["model_dir"]:
        bundled = default_model_dir() if family == "auto" else bundled_model_dir(family)
        if bundled is None:
            raise ParameterError(f"parameter 'model': no bundled {family} model; export one "
                                 f"(hmr-ros export --model {family} --checkpoint CKPT --out DIR) "
                                 "and set model_dir")
        values["model_dir"] = bundled
    manifest_path = Path(values["model_dir"], "manifest.json")
    if not manifest_path.is_file():
        raise ParameterError(f"parameter 'model_dir': {values['model_dir']} holds no "
                             "manifest.json (an exported model folder)")
    if family != "auto":
        import json

        try:
            held = json.loads(manifest_path.read_text()).get("model")
        except (OSError, ValueError) as exc:
            raise ParameterError(f"parameter 'model_dir': {manifest_path}: {exc}") from None
        if held != family:
            raise ParameterError(f"parameter 'model' is {family} but {values['model_dir']} holds "
                                 f"a {held} model")
    body = values["body_model"]
    if body != "procedural" and not Path(body).is_file():
        raise ParameterError(f"parameter 'body_model': no such file {body!r} (use 'procedural' "
                             "or the path of your SMPL file)")
    from hmr_ros.transport import qos_from_string

    for name in ("input_qos", "output_qos"):
        try:
            qos_from_string(values[name])
        except ValueError as exc:
            raise ParameterError(f"parameter '{name}': {exc}") from None
    return NodeConfig(values)


class _Overrides:
    """Stands in for a transport in `declare`: the defaults, overridden by a dict."""

    def __init__(self, overrides: Dict[str, Any]) -> None:
        self.overrides = dict(overrides)
        self._declared: set = set()

    def declare_parameter(self, name: str, default: Any, description: str = "") -> Any:
        self._declared.add(name)
        return self.overrides.get(name, default)

    def undeclared_parameters(self) -> List[str]:
        return sorted(set(self.overrides) - self._declared)


def config_from_overrides(overrides: Optional[Dict[str, Any]] = None) -> NodeConfig:
    """The node's configuration without a transport (offline tools: eval, live demo): the
    defaults with ``overrides``, validated exactly as the node validates its parameters."""
    return declare(_Overrides(overrides or {}))


def read_params_yaml(path: Any, node_name: str) -> Dict[str, Any]:
    """The ``ros__parameters`` for ``node_name`` in a ROS 2 parameter file (``/**`` entries
    first, the node's own over them)."""
    import yaml

    data = yaml.safe_load(Path(path).read_text()) or {}
    if not isinstance(data, dict):
        raise ParameterError(f"{path}: not a ROS 2 parameter file (a mapping of node names)")
    merged: Dict[str, Any] = {}
    name = node_name.strip("/").split("/")[-1]
    # wildcards first, then the node's own sections ("name", "/name", "/ns/name", "/**/name")
    keys = sorted((k for k in data if isinstance(k, str)), key=lambda k: "*" not in k)
    for key in keys:
        if key in ("/**", "**") or key.strip("/").split("/")[-1] == name:
            section = data.get(key)
            if isinstance(section, dict):
                merged.update(section.get("ros__parameters", {}) or {})
    if not merged and data:
        raise ParameterError(f"{path}: no ros__parameters for node {node_name!r} or '/**' "
                             f"(sections: {', '.join(map(str, data))})")
    return merged


def markdown_table(params: Sequence[Param] = PARAMS) -> str:
    """The README's parameter table."""
    rows = ["| parameter | type | default | range | description |", "|---|---|---|---|---|"]
    for p in params:
        default = f"`{p.default!r}`" if p.default != "" else "`''`"
        rows.append(f"| `{p.name}` | {type(p.default).__name__} | {default} | {p.range_text} | "
                    f"{p.description} |")
    return "\n".join(rows)
