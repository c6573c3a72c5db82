"""The ROS 2 command-line arguments (``--ros-args ... [--]``) that ``ros2 run`` and
``ros2 launch`` hand a node, for the built-in transport (rclpy parses them itself).

Supported: ``-r/--remap [node:]from:=to`` (``__node``, ``__ns`` included), ``-p/--param
[node:]name:=value``, ``--params-file FILE``, ``--log-level [name:=]level``; ``-e/--enclave``
and other flags are accepted and ignored with their value.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple

__all__ = ["RosArgs", "split_ros_args"]

_WITH_VALUE = {"-r", "--remap", "-p", "--param", "--params-file", "--log-level", "-e",
               "--enclave", "--log-config-file"}


@dataclass
class RosArgs:
    remaps: Dict[str, str] = field(default_factory=dict)
    params: Dict[str, Any] = field(default_factory=dict)
    params_files: List[str] = field(default_factory=list)
    node_name: Optional[str] = None
    namespace: Optional[str] = None
    log_level: Optional[str] = None

    def parameters_for(self, node_name: str) -> Dict[str, Any]:
        """Parameter files (in order), then ``-p`` overrides."""
        from .params import read_params_yaml

        values: Dict[str, Any] = {}
        for path in self.params_files:
            values.update(read_params_yaml(path, node_name))
        values.update(self.params)
        return values


def _for_this_node(rule: str, node_name: str) -> Optional[str]:
    """``node:rule`` applies to ``node`` only; a rule without a prefix applies to all."""
    head, sep, rest = rule.partition(":")
    if sep and ":=" in rest and not head.startswith("/") and "=" not in head:
        return rest if head == node_name else None
    return rule


def _split_rule(value: str, node_name: str) -> Optional[Tuple[str, str]]:
    """``[node:]lhs:=rhs`` -> (lhs, rhs), or None when the rule is for another node."""
    rule = _for_this_node(value, node_name)
    if rule is None:
        return None
    lhs, sep, rhs = rule.partition(":=")
    if not sep or not lhs:
        raise ValueError(f"--ros-args: {value!r} is not of the form from:=to / name:=value")
    return lhs, rhs


def split_ros_args(argv: Sequence[str], node_name: str = "hmr_node") -> Tuple[List[str], RosArgs]:
    """(the arguments outside --ros-args sections, what the sections say)."""
    import yaml

    plain: List[str] = []
    ros = RosArgs()
    items = list(argv)
    i = 0
    inside = False
    raw: List[Tuple[str, str]] = []
    while i < len(items):
        arg = items[i]
        if arg == "--ros-args":
            inside = True
        elif inside and arg == "--":
            inside = False
        elif inside:
            if arg in _WITH_VALUE:
                if i + 1 >= len(items):
                    raise ValueError(f"--ros-args: {arg} needs a value")
                raw.append((arg, items[i + 1]))
                i += 1
            # other flags inside --ros-args (e.g. --disable-rosout-logs) carry no value
        else:
            plain.append(arg)
        i += 1
    # node name first: node-specific rules depend on it
    for flag, value in raw:
        if flag in ("-r", "--remap"):
            rule = _for_this_node(value, node_name)
            if rule and rule.startswith("__node:="):
                ros.node_name = node_name = rule.split(":=", 1)[1]
    for flag, value in raw:
        if flag in ("-r", "--remap", "-p", "--param"):
            pair = _split_rule(value, node_name)
            if pair is None:
                continue
            lhs, rhs = pair
            if flag in ("-p", "--param"):
                ros.params[lhs] = yaml.safe_load(rhs) if rhs.strip() else ""
            elif lhs == "__ns":
                ros.namespace = rhs
            elif lhs != "__node":
                ros.remaps[lhs] = rhs
        elif flag == "--params-file":
            ros.params_files.append(value)
        elif flag == "--log-level":
            ros.log_level = value.split(":=")[-1]
    return plain, ros
