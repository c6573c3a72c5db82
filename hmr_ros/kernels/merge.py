"""VisHMR's merge of the visible and global branches (paper 000): eq. 4 and eq. 5.

Both walk the kinematic tree from the root, so ``parents`` must list each joint's parent before
the joint (SMPL's order does); that is checked.
"""

from __future__ import annotations

import numpy as np

from . import _arrays as A
from ._ext import ext


def kinematic_slerp(abs_vis, rel_glob, weight, parents):
    """Eq. 5: merge absolute visible rotations with the global branch's relative chain.

    Root: ``abs_out[0] = slerp(rel_glob[0], abs_vis[0], w[0])``; joint i:
    ``abs_out[i] = slerp(abs_out[parent] @ rel_glob[i], abs_vis[i], w[i])`` and
    ``rel_out[i] = abs_out[parent]^T @ abs_out[i]``. ``w = 1`` returns ``abs_vis`` exactly and
    ``w = 0`` the global chain exactly; weights are clamped to [0, 1]; a NaN weight or rotation
    propagates to NaN outputs for that joint and its descendants.

    Shapes: abs_vis, rel_glob (B, J, 3, 3); weight (B, J); parents (J,). Returns (rel_out, abs_out).
    """
    op = "kinematic_slerp"
    dtypes = (np.float32, np.float64)
    av, rg, w = (A.arg(op, n, x, dtypes) for n, x in
                 (("abs_vis", abs_vis), ("rel_glob", rel_glob), ("weight", weight)))
    dims: dict = {}
    A.check_shape(op, "abs_vis", av, ("B", "J", 3, 3), dims)
    A.check_shape(op, "rel_glob", rg, ("B", "J", 3, 3), dims)
    A.check_shape(op, "weight", w, ("B", "J"), dims)
    cuda = A.same_device(op, av, rg, w)
    f64 = A.same_dtype(op, av, rg, w) == np.float64
    B, J = dims["B"], dims["J"]
    par = A.to_device(av, A.parents_array(op, parents, J))
    rel_out = A.empty_like_device(av, av.shape, av.dtype)
    abs_out = A.empty_like_device(av, av.shape, av.dtype)
    args = (av.ptr, rg.ptr, w.ptr, A.ptr(par), B, J, A.ptr(rel_out), A.ptr(abs_out), f64)
    if cuda:
        ext().cuda_kinematic_slerp(*args, A.stream_of(av))
    else:
        ext().cpu_kinematic_slerp(*args)
    return rel_out, abs_out


def match_hypotheses(abs_vis, hyp_rel, weight, parents):
    """Eq. 4: pick the global-branch hypothesis closest to the visible branch.

    Each hypothesis is chained to absolute rotations and scored
    ``sum_i w_i * |<q_vis_i, q_hyp_i>|`` (sign-invariant quaternion cosine). Returns
    ``(best (B,) int64, score (B, K))``; ties go to the lowest index.

    Shapes: abs_vis (B, J, 3, 3); hyp_rel (B, K, J, 3, 3) relative rotations; weight (B, J).
    """
    op = "match_hypotheses"
    dtypes = (np.float32, np.float64)
    av, hr, w = (A.arg(op, n, x, dtypes) for n, x in
                 (("abs_vis", abs_vis), ("hyp_rel", hyp_rel), ("weight", weight)))
    dims: dict = {}
    A.check_shape(op, "abs_vis", av, ("B", "J", 3, 3), dims)
    A.check_shape(op, "hyp_rel", hr, ("B", "K", "J", 3, 3), dims)
    A.check_shape(op, "weight", w, ("B", "J"), dims)
    cuda = A.same_device(op, av, hr, w)
    f64 = A.same_dtype(op, av, hr, w) == np.float64
    B, K, J = dims["B"], dims["K"], dims["J"]
    if K == 0:
        raise A.KernelError(f"{op}: hyp_rel must hold at least one hypothesis (K >= 1), got K=0")
    par = A.to_device(av, A.parents_array(op, parents, J))
    best = A.empty_like_device(av, (B,), np.int64)
    score = A.empty_like_device(av, (B, K), av.dtype)
    args = (av.ptr, hr.ptr, w.ptr, A.ptr(par), B, K, J, A.ptr(best), A.ptr(score))
    if cuda:
        scratch = A.empty_like_device(av, (B * K * J * 9,), av.dtype)
        ext().cuda_match_hypotheses(*args, A.ptr(scratch), f64, A.stream_of(av))
    else:
        ext().cpu_match_hypotheses(*args, f64)
    return best, score
