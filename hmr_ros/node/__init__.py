"""The ROS 2 node: transport-agnostic logic (`HmrNode`), its parameters (`params`), the
conversions of frame results into ROS messages (`outputs`), and ``hmr-ros node`` (`cli`)."""

from .node import FrameSlot, HmrNode, NodeStats
from .params import PARAMS, NodeConfig, ParameterError, declare, read_params_yaml

__all__ = ["FrameSlot", "HmrNode", "NodeConfig", "NodeStats", "PARAMS", "ParameterError",
           "declare", "read_params_yaml"]
