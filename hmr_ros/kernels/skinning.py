"""Batched SMPL forward (linear blend skinning) as a compiled kernel.

Same semantics as ``smplx.lbs.lbs(..., pose2rot=False)``: shape blend shapes, joint regression,
pose blend shapes from ``(R[1:] - I)``, the rigid transform chain, and skinning. ``posedirs``
may be stored in float16 (half the memory traffic, the dominant cost at small batch) and is
then accumulated in float32. NaN in the inputs propagates to the outputs it touches.
"""

from __future__ import annotations

import numpy as np

from . import _arrays as A
from ._ext import ext


def lbs(betas, rotmats, v_template, shapedirs, posedirs, j_regressor, parents, weights):
    """Posed vertices (B, V, 3) and joints (B, J, 3) of a batch of bodies.

    Shapes: betas (B, NB); rotmats (B, J, 3, 3) relative rotations; v_template (V, 3);
    shapedirs (V, 3, NB); posedirs ((J-1)*9, V*3) float32 or float16; j_regressor (J, V);
    parents (J,); weights (V, J). Everything else float32; NumPy or CUDA arrays, not mixed.
    """
    op = "lbs"
    f32 = (np.float32,)
    be = A.arg(op, "betas", betas, f32)
    rm = A.arg(op, "rotmats", rotmats, f32)
    vt = A.arg(op, "v_template", v_template, f32)
    sd = A.arg(op, "shapedirs", shapedirs, f32)
    pd = A.arg(op, "posedirs", posedirs, (np.float32, np.float16))
    jr = A.arg(op, "j_regressor", j_regressor, f32)
    lw = A.arg(op, "weights", weights, f32)
    dims: dict = {}
    A.check_shape(op, "betas", be, ("B", "NB"), dims)
    A.check_shape(op, "rotmats", rm, ("B", "J", 3, 3), dims)
    A.check_shape(op, "v_template", vt, ("V", 3), dims)
    A.check_shape(op, "shapedirs", sd, ("V", 3, "NB"), dims)
    B, J, V, NB = dims["B"], dims["J"], dims["V"], dims["NB"]
    if not 1 <= J <= 64:
        raise A.KernelError(f"{op}: number of joints must be in [1, 64], got {J}")
    dims["P"], dims["V*3"] = (J - 1) * 9, V * 3
    A.check_shape(op, "posedirs", pd, ("P", "V*3"), dims)
    A.check_shape(op, "j_regressor", jr, ("J", "V"), dims)
    A.check_shape(op, "weights", lw, ("V", "J"), dims)
    cuda = A.same_device(op, be, rm, vt, sd, pd, jr, lw)
    par = A.to_device(be, A.parents_array(op, parents, J))
    vertices = A.empty_like_device(be, (B, V, 3), np.float32)
    joints = A.empty_like_device(be, (B, J, 3), np.float32)
    args = (B, V, J, NB, be.ptr, rm.ptr, vt.ptr, sd.ptr, pd.ptr, pd.dtype == np.float16, jr.ptr,
            A.ptr(par), lw.ptr, A.ptr(vertices), A.ptr(joints))
    if cuda:
        work = A.empty_like_device(be, (max(1, ext().cuda_lbs_workspace_floats(B, J, NB)),),
                                   np.float32)
        ext().cuda_lbs(*args, A.ptr(work), A.stream_of(be))
    else:
        ext().cpu_lbs(*args)
    return vertices, joints
