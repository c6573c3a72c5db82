"""The managed-node (lifecycle) interface of ROS 2 for the built-in transport.

rclpy's LifecycleNode serves these itself; on the built-in transport this module does, so
``ros2 lifecycle get|set|list /hmr_node`` and lifecycle managers drive ``hmr-ros node`` like any
managed node: the services ``~/get_state``, ``~/change_state``, ``~/get_available_states`` and
``~/get_available_transitions`` (lifecycle_msgs), and ``~/transition_event`` messages. The
states and transitions are those of the ROS 2 managed-node design; each transition runs one
hook (configure, activate, deactivate, cleanup, shutdown) and fails if the hook raises.
"""

from __future__ import annotations

import threading
import time
import traceback
from typing import Any, Callable, Dict, List, Tuple

from hmr_ros.transport import types

__all__ = ["LifecycleServer", "STATES", "TRANSITIONS"]

#: primary states (lifecycle_msgs/State)
STATES = {1: "unconfigured", 2: "inactive", 3: "active", 4: "finalized"}
_TRANSITION_STATES = {"configure": (10, "configuring"), "cleanup": (11, "cleaningup"),
                      "shutdown": (12, "shuttingdown"), "activate": (13, "activating"),
                      "deactivate": (14, "deactivating")}
#: transition id -> (label, from state, to state), lifecycle_msgs/Transition ids
TRANSITIONS: Dict[int, Tuple[str, int, int]] = {
    1: ("configure", 1, 2), 2: ("cleanup", 2, 1), 3: ("activate", 2, 3), 4: ("deactivate", 3, 2),
    5: ("shutdown", 1, 4), 6: ("shutdown", 2, 4), 7: ("shutdown", 3, 4),
}
_STATE_OF = {"unconfigured": 1, "inactive": 2, "active": 3, "finalized": 4}


def _state(state_id: int, label: str = "") -> Any:
    return types.make("lifecycle_msgs/msg/State", id=state_id, label=label or STATES[state_id])


def _transition(tid: int) -> Any:
    return types.make("lifecycle_msgs/msg/Transition", id=tid, label=TRANSITIONS[tid][0])


class LifecycleServer:
    """Serves the lifecycle of ``node`` (an object with ``state`` and one method per hook) on
    a transport that has ``create_service``."""

    def __init__(self, transport: Any, node: Any,
                 hooks: Dict[str, Callable[[], None]]) -> None:
        self._transport, self._node, self._hooks = transport, node, hooks
        self._lock = threading.Lock()
        self._events = transport.create_publisher("~/transition_event",
                                                  "lifecycle_msgs/msg/TransitionEvent")
        self.services = [
            transport.create_service("~/get_state", "lifecycle_msgs/srv/GetState",
                                     self._get_state),
            transport.create_service("~/change_state", "lifecycle_msgs/srv/ChangeState",
                                     self._change_state),
            transport.create_service("~/get_available_states",
                                     "lifecycle_msgs/srv/GetAvailableStates",
                                     self._available_states),
            transport.create_service("~/get_available_transitions",
                                     "lifecycle_msgs/srv/GetAvailableTransitions",
                                     self._available_transitions),
        ]

    @property
    def state_id(self) -> int:
        return _STATE_OF.get(self._node.state, 1)

    def _get_state(self, _request: Any) -> Any:
        return types.make("lifecycle_msgs_srv/msg/GetState_Response",
                          current_state=_state(self.state_id))

    def _available_states(self, _request: Any) -> Any:
        states = [_state(i) for i in STATES] + [_state(i, label)
                                                for i, label in _TRANSITION_STATES.values()]
        return types.make("lifecycle_msgs_srv/msg/GetAvailableStates_Response",
                          available_states=states)

    def _available_transitions(self, _request: Any) -> Any:
        current = self.state_id
        found = [types.make("lifecycle_msgs/msg/TransitionDescription",
                            transition=_transition(tid), start_state=_state(start),
                            goal_state=_state(goal))
                 for tid, (_, start, goal) in TRANSITIONS.items() if start == current]
        return types.make("lifecycle_msgs_srv/msg/GetAvailableTransitions_Response",
                          available_transitions=found)

    def _change_state(self, request: Any) -> Any:
        ok = self.trigger_id(int(request.transition.id), request.transition.label)
        return types.make("lifecycle_msgs_srv/msg/ChangeState_Response", success=ok)

    def trigger(self, label: str) -> bool:
        """Run the transition ``label`` from the current state (autostart, shutdown)."""
        return self.trigger_id(0, label)

    def trigger_id(self, tid: int, label: str = "") -> bool:
        with self._lock:
            current = self.state_id
            if tid == 0:  # by label, as `ros2 lifecycle set` may send it
                tid = next((t for t, (name, start, _) in TRANSITIONS.items()
                            if name == label and start == current), 0)
            if tid not in TRANSITIONS or TRANSITIONS[tid][1] != current:
                self._transport.logger.warning("lifecycle: transition %s is not available in "
                                               "state %s", label or tid, STATES[current])
                return False
            name, start, goal = TRANSITIONS[tid]
            try:
                self._hooks[name]()
            except Exception:  # noqa: BLE001 - a failed transition, reported to the caller
                self._transport.logger.error("lifecycle: %s failed:\n%s", name,
                                             traceback.format_exc())
                return False
            self._events.publish(types.make(
                "lifecycle_msgs/msg/TransitionEvent", timestamp=time.time_ns(),
                transition=_transition(tid), start_state=_state(start),
                goal_state=_state(goal)))
            return True

    def available_transition_labels(self) -> List[str]:
        return [TRANSITIONS[t][0] for t in TRANSITIONS if TRANSITIONS[t][1] == self.state_id]
