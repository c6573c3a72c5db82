"""Model export: ONNX stage graphs, their manifest, and the TensorRT compatibility check."""

from .errors import ExportError
from .manifest import MANIFEST_NAME, Manifest, StageSpec, TensorSpec
from .onnx_export import PARAM_OUTPUTS, PARAM_STAGE, export_param_regressor, export_vishmr
from .trt_support import OPSET_RANGE, SUPPORTED_OPS, TENSORRT_VERSION, check_tensorrt_compat

__all__ = ["ExportError", "MANIFEST_NAME", "Manifest", "OPSET_RANGE", "SUPPORTED_OPS",
           "StageSpec", "TENSORRT_VERSION", "TensorSpec", "check_tensorrt_compat",
           "export_param_regressor", "export_vishmr", "PARAM_OUTPUTS", "PARAM_STAGE"]
