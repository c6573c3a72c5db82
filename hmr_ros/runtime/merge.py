"""VisHMR's merge with the compiled kernels: the runtime twin of ``VisHMR.merge``.

Takes stage B's outputs (NumPy, or torch CUDA tensors) and returns final relative rotations, absolute rotations, the
chosen hypothesis, and the posed mesh. The ablation modes of paper table 2 are here too so an
evaluation can compare them on the same stage outputs:

* ``visible``: the visible branch alone (relative rotations of its absolute ones),
* ``global``: the global branch's most likely hypothesis,
* ``ks_highest``: kinematic slerp with the most likely hypothesis (no matching),
* ``ks_matched``: visibility matching (eq. 4), then kinematic slerp (eq. 5) -- the method.
"""

from __future__ import annotations

import numpy as np

from hmr_ros import kernels as K
from hmr_ros.body.constants import PARENTS

from .errors import EngineError
from .placement import array_ops

_NUMPY = array_ops(np.zeros(0))

MODES = ("visible", "global", "ks_highest", "ks_matched")


def merge(stage_b: dict, lbs_model: "K.LbsModel", mode: str = "ks_matched") -> dict:
    """Final pose and mesh from stage B outputs ``abs_vis, omega, hyp_rel, hyp_loglik, betas``.

    NumPy in, NumPy out on the host; torch CUDA tensors in, tensors out on their device (the
    kernels run on the current stream: the runner's device-resident path)."""
    if mode not in MODES:
        raise EngineError(f"unknown merge mode '{mode}': use one of {', '.join(MODES)}")
    xp = array_ops(stage_b["abs_vis"])
    if xp is _NUMPY:  # the host path accepts any array-likes
        stage_b = {k: np.ascontiguousarray(stage_b[k], dtype=np.float32)
                   for k in ("abs_vis", "omega", "hyp_rel", "hyp_loglik", "betas")}
    abs_vis, omega, hyp_rel = stage_b["abs_vis"], stage_b["omega"], stage_b["hyp_rel"]
    loglik, betas = stage_b["hyp_loglik"], stage_b["betas"]
    B = abs_vis.shape[0]
    rows = xp.arange(B, abs_vis)
    most_likely = loglik.argmax(1) if B else xp.full(0, 0, abs_vis)
    if mode == "ks_matched":
        best, scores = K.match_hypotheses(abs_vis, hyp_rel, omega, PARENTS)
    else:
        best, scores = most_likely, None
    chosen = xp.contiguous(hyp_rel[rows, best])
    if mode == "visible":  # w = 1: exactly the visible branch, and its relative rotations
        rel, absolute = K.kinematic_slerp(abs_vis, chosen, xp.ones_like(omega), PARENTS)
        best = xp.full(B, -1, abs_vis)
    elif mode == "global":
        rel = chosen
        _, absolute = K.kinematic_slerp(abs_vis, chosen, xp.zeros_like(omega), PARENTS)
    else:
        rel, absolute = K.kinematic_slerp(abs_vis, chosen, omega, PARENTS)
    vertices, joints = lbs_model(betas, rel)
    return {"rel_rotmats": rel, "abs_rotmats": absolute, "best": xp.int64(best),
            "match_scores": scores, "vertices": vertices, "joints": joints}
