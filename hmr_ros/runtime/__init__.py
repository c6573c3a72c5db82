"""Runtime: run exported regressors (ONNX Runtime today; TensorRT and torch backends follow)
with the compiled kernels between and after their stages."""

from .errors import EngineError
from .merge import MODES, merge
from .vishmr import OrtVisHMR

__all__ = ["EngineError", "MODES", "OrtVisHMR", "merge"]
