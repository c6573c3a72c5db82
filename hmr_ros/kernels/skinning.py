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


_MODEL_FIELDS = ("v_template", "shapedirs", "posedirs", "j_regressor", "weights")


def _check_model(op, v_template, shapedirs, posedirs, j_regressor, weights, dims) -> dict:
    """Validated model arguments by name; binds V, J, NB, P in ``dims``."""
    f32 = (np.float32,)
    a = {"v_template": A.arg(op, "v_template", v_template, f32),
         "shapedirs": A.arg(op, "shapedirs", shapedirs, f32),
         "posedirs": A.arg(op, "posedirs", posedirs, (np.float32, np.float16)),
         "j_regressor": A.arg(op, "j_regressor", j_regressor, f32),
         "weights": A.arg(op, "weights", weights, f32)}
    A.check_shape(op, "v_template", a["v_template"], ("V", 3), dims)
    A.check_shape(op, "shapedirs", a["shapedirs"], ("V", 3, "NB"), dims)
    A.check_shape(op, "j_regressor", a["j_regressor"], ("J", "V"), dims)
    J, V = dims["J"], dims["V"]
    if not 1 <= J <= 64:
        raise A.KernelError(f"{op}: number of joints must be in [1, 64], got {J}")
    dims["P"], dims["V*3"] = (J - 1) * 9, V * 3
    A.check_shape(op, "posedirs", a["posedirs"], ("P", "V*3"), dims)
    A.check_shape(op, "weights", a["weights"], ("V", "J"), dims)
    return a


def _check_pose(op, betas, rotmats, dims):
    f32 = (np.float32,)
    be, rm = A.arg(op, "betas", betas, f32), A.arg(op, "rotmats", rotmats, f32)
    A.check_shape(op, "betas", be, ("B", "NB"), dims)
    A.check_shape(op, "rotmats", rm, ("B", "J", 3, 3), dims)
    return be, rm


def _cuda_lbs(be, rm, m: dict, par, dims):
    B, V, J, NB = dims["B"], dims["V"], dims["J"], dims["NB"]
    vertices = A.empty_like_device(be, (B, V, 3), np.float32)
    joints = A.empty_like_device(be, (B, J, 3), np.float32)
    work = A.empty_like_device(be, (max(1, ext().cuda_lbs_workspace_floats(B, J, NB)),),
                               np.float32)
    ext().cuda_lbs(B, V, J, NB, be.ptr, rm.ptr, m["v_template"].ptr, m["shapedirs"].ptr,
                   m["posedirs"].ptr, m["posedirs"].dtype == np.float16, m["j_regressor"].ptr,
                   A.ptr(par), m["weights"].ptr, A.ptr(vertices), A.ptr(joints), A.ptr(work),
                   A.stream_of(be))
    return vertices, joints


def lbs(betas, rotmats, v_template, shapedirs, posedirs, j_regressor, parents, weights):
    """Posed vertices (B, V, 3) and joints (B, J, 3) of a batch of bodies.

    Shapes: betas (B, NB); rotmats (B, J, 3, 3) relative rotations; v_template (V, 3);
    shapedirs (V, 3, NB); posedirs ((J-1)*9, V*3) float32 or float16; j_regressor (J, V);
    parents (J,); weights (V, J). Everything else float32; NumPy or CUDA arrays, not mixed.
    For repeated calls on one body, :class:`LbsModel` prepares the model data once.
    """
    op = "lbs"
    dims: dict = {}
    be, rm = _check_pose(op, betas, rotmats, dims)
    m = _check_model(op, v_template, shapedirs, posedirs, j_regressor, weights, dims)
    cuda = A.same_device(op, be, rm, *m.values())
    par = A.to_device(be, A.parents_array(op, parents, dims["J"]))
    if cuda:
        return _cuda_lbs(be, rm, m, par, dims)
    B, V, J, NB = dims["B"], dims["V"], dims["J"], dims["NB"]
    vertices = np.empty((B, V, 3), np.float32)
    joints = np.empty((B, J, 3), np.float32)
    ext().cpu_lbs(B, V, J, NB, be.ptr, rm.ptr, m["v_template"].ptr, m["shapedirs"].ptr,
                  m["posedirs"].ptr, m["posedirs"].dtype == np.float16, m["j_regressor"].ptr,
                  A.ptr(par), m["weights"].ptr, A.ptr(vertices), A.ptr(joints))
    return vertices, joints


class LbsModel:
    """A body model prepared once for fast repeated LBS (the runtime's path).

    On the CPU the compiled model keeps the joint basis, CSR skinning weights and tile-packed
    blend shapes (all-zero rows dropped), so a call does only per-sample work. CUDA inputs run
    the CUDA kernel on copies of the model uploaded once per device. Model arrays are NumPy,
    float32 (``posedirs`` float32 or float16: pick with ``posedirs_dtype`` in
    :meth:`from_body`).
    """

    def __init__(self, v_template, shapedirs, posedirs, j_regressor, parents, weights):
        op = "LbsModel"
        dims: dict = {}
        m = _check_model(op, v_template, shapedirs, posedirs, j_regressor, weights, dims)
        if A.same_device(op, *m.values()):
            raise A.KernelError(f"{op}: model arrays must be NumPy arrays (uploaded per device "
                                "on first CUDA call)")
        self._dims = {k: dims[k] for k in ("V", "J", "NB")}
        self._parents = A.parents_array(op, parents, dims["J"])
        self._host = {k: m[k].obj for k in _MODEL_FIELDS}
        self._device: dict = {}
        V, J, NB = dims["V"], dims["J"], dims["NB"]
        self._cpu = ext().CpuLbsModel(V, J, NB, m["v_template"].ptr, m["shapedirs"].ptr,
                                      m["posedirs"].ptr, m["posedirs"].dtype == np.float16,
                                      m["j_regressor"].ptr, A.ptr(self._parents),
                                      m["weights"].ptr)

    @classmethod
    def from_body(cls, body, posedirs_dtype=np.float32) -> "LbsModel":
        """From a :class:`hmr_ros.body.BodyModel`; ``posedirs_dtype=np.float16`` halves the
        dominant memory traffic (accumulation stays float32)."""
        return cls(body.v_template, body.shapedirs,
                   np.ascontiguousarray(body.posedirs, dtype=posedirs_dtype), body.j_regressor,
                   body.parents, body.weights)

    @property
    def packed_fraction(self) -> float:
        """Share of blend-shape rows kept after dropping all-zero tile rows (1.0 = dense)."""
        return self._cpu.stored_rows / max(1, self._cpu.dense_rows)

    def __call__(self, betas, rotmats):
        """(vertices (B, V, 3), joints (B, J, 3)) for betas (B, NB) and rotmats (B, J, 3, 3)."""
        op = "LbsModel"
        dims = dict(self._dims)
        be, rm = _check_pose(op, betas, rotmats, dims)
        if A.same_device(op, be, rm):
            key = (A._library(be.obj), str(getattr(be.obj, "device", "")))
            if key not in self._device:
                arrays = {k: A.to_device(be, v) for k, v in self._host.items()}
                arrays["parents"] = A.to_device(be, self._parents)
                self._device[key] = arrays
            dev = self._device[key]
            m = {k: A.arg(op, k, dev[k], (np.float32, np.float16)) for k in _MODEL_FIELDS}
            dims["B"] = be.shape[0]
            return _cuda_lbs(be, rm, m, dev["parents"], dims)
        B, V, J = be.shape[0], dims["V"], dims["J"]
        vertices = np.empty((B, V, 3), np.float32)
        joints = np.empty((B, J, 3), np.float32)
        self._cpu.forward(B, be.ptr, rm.ptr, A.ptr(vertices), A.ptr(joints))
        return vertices, joints
