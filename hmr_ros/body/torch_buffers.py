"""Torch view of a ``BodyModel``: constant buffers that follow ``.to(device)``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Optional

import numpy as np
import torch
from torch import nn

if TYPE_CHECKING:
    from .model import BodyModel

__all__ = ["BodyBuffers"]


class BodyBuffers(nn.Module):
    """The body model's arrays as buffers, named as smplx names them.

    ``v_template`` (V x 3), ``shapedirs`` (V x 3 x 10), ``posedirs`` (207 x V*3),
    ``J_regressor`` (24 x V), ``lbs_weights`` (V x 24), ``parents`` (24, long), ``faces``
    (F x 3, long). Register it as a submodule of a network and the body moves with the network;
    the LBS itself lives in ``hmr_ros.kernels``. Buffers are copies: the numpy model stays
    read-only.
    """

    def __init__(
        self, model: "BodyModel", device: Optional[Any] = None, dtype: Optional[Any] = None
    ) -> None:
        super().__init__()
        dtype = dtype or torch.float32

        def tensor(array: np.ndarray, kind: Any) -> torch.Tensor:
            return torch.tensor(np.array(array), dtype=kind, device=device)

        self.name = model.name
        self.register_buffer("v_template", tensor(model.v_template, dtype))
        self.register_buffer("shapedirs", tensor(model.shapedirs, dtype))
        self.register_buffer("posedirs", tensor(model.posedirs, dtype))
        self.register_buffer("J_regressor", tensor(model.j_regressor, dtype))
        self.register_buffer("lbs_weights", tensor(model.weights, dtype))
        self.register_buffer("parents", tensor(model.parents, torch.long))
        self.register_buffer("faces", tensor(model.faces, torch.long))

    def extra_repr(self) -> str:
        return f"name={self.name!r}, vertices={self.v_template.shape[0]}"
