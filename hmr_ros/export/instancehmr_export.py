"""Export InstanceHMR (paper 002) as two graphs, and import the authors' released checkpoint.

``maps.onnx``: ``images`` (B x 3 x S x S, letterboxed whole frame) -> ``centre_heatmap`` (sigmoid
probabilities, B x 1 x h x w) and ``param_map`` (B x 82 x h x w). ``decode.onnx``: ``param_map``
and ``index`` (B x K int32 flat peak indices, -1 = empty slot; K = ``MAX_PEOPLE``, fixed) ->
``rotmats``, ``betas``, ``cam`` per slot (B x K x ...; `InstanceHMRGatherDecode`). Peak finding
runs between them as a kernel (`hmr_ros.kernels.centres`), never in a graph; only the batch axis
is dynamic, so TensorRT's profiles and buffer plans take both graphs as they are.

**Released checkpoints** (github DCVL-3D/InstanceHMR_release, ROMP's ``save_single_model``):
``torch.save({'model_state_dict': DataParallel(model).state_dict(), 'optimizer_state_dict':
..., 'scaler_state_dict': ...})``, so keys carry ``module.``; a bare state dict (with or without
the prefix) is accepted too. Besides the network they hold ``_result_parser.*`` (the SMPL model's
buffers) and possibly ``_calc_loss.*`` (the GMM prior's): data, not weights, dropped on import.
Every other key must match our model's name and shape exactly (the key list is pinned in
``tests/data/instancehmr_reference_keys_*.txt``), else :class:`CheckpointMismatchError` lists the
missing, unexpected and mismatched keys.
"""

from __future__ import annotations

import pickle
from dataclasses import asdict, replace
from pathlib import Path
from typing import Dict, List, Mapping, Union

from .errors import ExportError
from .manifest import Manifest, StageSpec, sha256_of
from .onnx_export import _export_one, _specs
from .trt_support import check_tensorrt_compat

__all__ = ["CENTRE_THRESHOLD", "CheckpointMismatchError", "DECODE_INPUTS", "DECODE_OUTPUTS",
           "MAPS_INPUTS", "MAPS_OUTPUTS", "export_instancehmr", "import_instancehmr_checkpoint",
           "release_state_dict"]

MAPS_INPUTS = ("images",)
MAPS_OUTPUTS = ("centre_heatmap", "param_map")
DECODE_INPUTS = ("param_map", "index")
DECODE_OUTPUTS = ("rotmats", "betas", "cam")
#: the release's ``centermap_conf_thresh`` for evaluation
CENTRE_THRESHOLD = 0.2
CENTRE_WINDOW = 3
MAX_PEOPLE = 16
#: release checkpoint entries that are not network weights (module docs)
_NON_NETWORK_PREFIXES = ("_result_parser.", "_calc_loss.")
_LIST_LIMIT = 12


class CheckpointMismatchError(ExportError):
    """A checkpoint's keys or shapes differ from the model's."""


def _check_parity(path: Path, session, inputs, outputs, args, expected, atol: float) -> None:
    import numpy as np

    got = session.run(list(outputs), {n: a.numpy() for n, a in zip(inputs, args)})
    for key, a, b in zip(outputs, expected, got):
        err = float(np.max(np.abs(a - b))) if a.size else 0.0
        if not err <= atol:
            raise ExportError(f"{path}: ONNX Runtime differs from torch on '{key}' by {err:.2e} "
                              f"(> {atol:g})")


def export_instancehmr(model, out_dir: Union[str, Path], *, body, opset: int = 17,
                       check_tensorrt: bool = True, parity_atol: float = 1e-3) -> Manifest:
    """Writes ``maps.onnx``, ``decode.onnx`` and ``manifest.json`` (``model: instancehmr``).

    ONNX Runtime must reproduce torch on a batch of 2 images and their decoded peaks (one slot
    empty) within ``parity_atol``; a graph TensorRT's parser cannot read raises :class:`ExportError`
    (``check_tensorrt``). The model is put in eval mode.
    """
    import onnxruntime as ort
    import torch

    from hmr_ros.models import IMAGE_MEAN, IMAGE_STD
    from hmr_ros.models.instancehmr import InstanceHMRExport, InstanceHMRGatherDecode

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    cfg = model.config
    size = int(cfg.input_size)
    model.eval()
    maps, decode = InstanceHMRExport(model).eval(), InstanceHMRGatherDecode(MAX_PEOPLE).eval()
    gen = torch.Generator().manual_seed(0)
    images = torch.rand(2, 3, size, size, generator=gen) * 2 - 1
    with torch.no_grad():
        centre, param_map = maps(images)
        # real maps moved off the rest pose (a weak-perspective scale stays positive), and
        # peaks at random cells with an empty slot
        param_map = param_map + 0.3 * torch.randn(param_map.shape, generator=gen)
        param_map[:, 0] = param_map[:, 0].abs() + 0.1
        cells = param_map.shape[-2] * param_map.shape[-1]
        index = torch.randint(0, cells, (2, MAX_PEOPLE), generator=gen, dtype=torch.int32)
        index[1, 2:] = -1
        jobs = (("maps", maps, (images,), MAPS_INPUTS, MAPS_OUTPUTS),
                ("decode", decode, (param_map, index), DECODE_INPUTS, DECODE_OUTPUTS))
        expected = {name: [t.numpy() for t in module(*args)]
                    for name, module, args, _, _ in jobs}
        _export_one(maps, (images,), out / "maps.onnx", MAPS_INPUTS, MAPS_OUTPUTS, opset)
        _export_one(decode, (param_map, index), out / "decode.onnx", DECODE_INPUTS,
                    DECODE_OUTPUTS, opset)
    stages = {}
    for name, _, args, inputs, outputs in jobs:
        path = out / f"{name}.onnx"
        if check_tensorrt:
            problems = check_tensorrt_compat(path)
            if problems:
                raise ExportError(f"{path}: not buildable by TensorRT: "
                                  + "; ".join(map(str, problems)))
        sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        _check_parity(path, sess, inputs, outputs, args, expected[name], parity_atol)
        input_specs = tuple(replace(t, dtype="int32") if t.name == "index" else t
                            for t in _specs(sess.get_inputs(), inputs))
        stages[name] = StageSpec(file=path.name, sha256=sha256_of(path), inputs=input_specs,
                                 outputs=_specs(sess.get_outputs(), outputs))
    map_size = int(param_map.shape[-1])
    manifest = Manifest(
        model="instancehmr",
        stages=stages,
        preprocessing={"crop_size": size, "input_size": size, "letterbox": True,
                       "mean": list(IMAGE_MEAN), "std": list(IMAGE_STD),
                       "channel_order": "RGB", "layout": "NCHW", "scale": 1.0 / 255.0},
        body={"name": getattr(body, "name", "procedural"),
              "num_vertices": int(body.num_vertices), "num_joints": 24, "num_betas": 10},
        heads={"outputs": "smpl_params", "bottom_up": True, "predicts_visibility": False,
               "param_dim": int(param_map.shape[1]),
               "centres": {"stride": size // map_size, "threshold": CENTRE_THRESHOLD,
                           "window": CENTRE_WINDOW, "max_people": MAX_PEOPLE}},
        config=asdict(cfg),
        opset=opset,
    )
    manifest.save(out)
    return manifest


def _load_checkpoint(path: Path) -> Mapping:
    import torch

    try:
        return torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        # older releases pickle more than tensors (e.g. numpy scalars in the optimizer state);
        # only a file the user chose to import is ever loaded this way
        return torch.load(str(path), map_location="cpu", weights_only=False)


def release_state_dict(checkpoint: Mapping) -> Dict[str, "object"]:
    """The network weights of a released checkpoint (module docs): unwraps
    ``model_state_dict`` / ``state_dict``, strips ``module.``, drops non-network buffers."""
    import torch

    state = checkpoint
    for key in ("model_state_dict", "state_dict", "model"):
        if isinstance(state, Mapping) and key in state and isinstance(state[key], Mapping):
            state = state[key]
            break
    if not isinstance(state, Mapping) or not all(
            isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointMismatchError("not a state dict of tensors (nor one under "
                                      "'model_state_dict' / 'state_dict')")
    out = {}
    for key, value in state.items():
        name = key[len("module."):] if key.startswith("module.") else key
        if not name.startswith(_NON_NETWORK_PREFIXES):
            out[name] = value
    return out


def _listing(title: str, items: List[str]) -> str:
    shown = ", ".join(items[:_LIST_LIMIT])
    more = f" (+{len(items) - _LIST_LIMIT} more)" if len(items) > _LIST_LIMIT else ""
    return f"{title} ({len(items)}): {shown}{more}"


def import_instancehmr_checkpoint(ckpt_path: Union[str, Path], out_dir: Union[str, Path], *,
                                  backbone: str = "hrnet_w32", body, input_size: int = 512,
                                  opset: int = 17, check_tensorrt: bool = True,
                                  parity_atol: float = 1e-3, config=None) -> Manifest:
    """The authors' checkpoint -> an exported model folder (:func:`export_instancehmr`).

    ``backbone``: the checkpoint's (``hrnet_w32``, released, or ``resnet50``); ``input_size``:
    the exported input side (the release runs 512; the weights are size-agnostic, maps are
    ``input_size / 8``). ``config``: a full :class:`InstanceHMRConfig` instead. Keys and shapes
    are verified before anything is written.
    """
    import torch

    from hmr_ros.models.instancehmr import InstanceHMR, InstanceHMRConfig

    path = Path(ckpt_path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such checkpoint")
    cfg = config or InstanceHMRConfig(backbone=backbone, input_size=input_size)
    state = release_state_dict(_load_checkpoint(path))
    model = InstanceHMR(cfg)
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    mismatched = sorted(f"{k} {tuple(state[k].shape)} != {tuple(v.shape)}"
                        for k, v in expected.items()
                        if k in state and tuple(state[k].shape) != tuple(v.shape))
    if missing or unexpected or mismatched:
        parts = [_listing(t, items) for t, items in (("missing", missing),
                                                      ("unexpected", unexpected),
                                                      ("shape mismatch", mismatched)) if items]
        raise CheckpointMismatchError(
            f"{path}: not an InstanceHMR {cfg.backbone} checkpoint -- " + "; ".join(parts))
    with torch.no_grad():
        model.load_state_dict(state, strict=True)
    return export_instancehmr(model, out_dir, body=body, opset=opset,
                              check_tensorrt=check_tensorrt, parity_atol=parity_atol)
