"""VisHMR's merge with the compiled kernels: the runtime twin of ``VisHMR.merge``.

Takes stage B's outputs (NumPy) and returns final relative rotations, absolute rotations, the
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

MODES = ("visible", "global", "ks_highest", "ks_matched")


def merge(stage_b: dict, lbs_model: "K.LbsModel", mode: str = "ks_matched") -> dict:
    """Final pose and mesh from stage B outputs ``abs_vis, omega, hyp_rel, hyp_loglik, betas``."""
    if mode not in MODES:
        raise EngineError(f"unknown merge mode '{mode}': use one of {', '.join(MODES)}")
    abs_vis = np.ascontiguousarray(stage_b["abs_vis"], dtype=np.float32)
    omega = np.ascontiguousarray(stage_b["omega"], dtype=np.float32)
    hyp_rel = np.ascontiguousarray(stage_b["hyp_rel"], dtype=np.float32)
    loglik = np.asarray(stage_b["hyp_loglik"], dtype=np.float32)
    betas = np.ascontiguousarray(stage_b["betas"], dtype=np.float32)
    B = abs_vis.shape[0]
    rows = np.arange(B)
    most_likely = np.argmax(loglik, axis=1) if B else np.zeros(0, np.int64)
    if mode == "ks_matched":
        best, scores = K.match_hypotheses(abs_vis, hyp_rel, omega, PARENTS)
    else:
        best, scores = most_likely, None
    chosen = np.ascontiguousarray(hyp_rel[rows, best])
    if mode == "visible":  # w = 1: exactly the visible branch, and its relative rotations
        rel, absolute = K.kinematic_slerp(abs_vis, chosen, np.ones_like(omega), PARENTS)
        best = np.full(B, -1, np.int64)
    elif mode == "global":
        rel = chosen
        _, absolute = K.kinematic_slerp(abs_vis, chosen, np.zeros_like(omega), PARENTS)
    else:
        rel, absolute = K.kinematic_slerp(abs_vis, chosen, omega, PARENTS)
    vertices, joints = lbs_model(betas, rel)
    return {"rel_rotmats": rel, "abs_rotmats": absolute, "best": best.astype(np.int64),
            "match_scores": scores, "vertices": vertices, "joints": joints}
