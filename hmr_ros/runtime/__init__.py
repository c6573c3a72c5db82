"""Runtime: exported regressors run with the compiled kernels, and the per-frame pipeline
(boxes -> crops -> stages + kernels -> full-frame results, tracked and optionally smoothed)."""

from .backends import BACKENDS, select_backend
from .bottom_up import BOTTOM_UP_MODELS, BottomUpRunner
from .boxes import Box, select_boxes, whole_frame
from .camera import Intrinsics, crop_to_full_translation, resolve_intrinsics
from .errors import EngineError
from .merge import MODES, merge
from .pipeline import FramePipeline, PipelineParams
from .results import FrameResult, Header, PersonResult
from .tracking import Tracker
from .param_regressor import PARAM_MODELS, ParamRegressorRunner, open_regressor
from .vishmr import OrtVisHMR, VisHMRRunner

__all__ = ["BACKENDS", "BOTTOM_UP_MODELS", "BottomUpRunner", "Box", "EngineError", "FramePipeline",
           "FrameResult", "Header", "Intrinsics", "MODES", "OrtVisHMR", "PARAM_MODELS",
           "ParamRegressorRunner", "PersonResult", "PipelineParams", "Tracker", "VisHMRRunner",
           "crop_to_full_translation", "merge", "open_regressor", "resolve_intrinsics",
           "select_backend", "select_boxes", "whole_frame"]
