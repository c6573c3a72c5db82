"""A TFLite graph rebuilt as a PyTorch module, so it exports to ONNX with a dynamic batch.

Why not tf2onnx: it needs TensorFlow (1.7 GB) only to convert, refuses BlazePose's detector
(its weights are stored sparse, behind DENSIFY ops), and leaves batch 1 baked into reshapes.
BlazePose's two graphs use a dozen ops, so the graph is read with ``ai-edge-litert``'s
flatbuffer schema and re-expressed op by op. Constant weights (fp16 behind DEQUANTIZE, sparse
behind DENSIFY) are not decoded by hand: the reference interpreter runs once with every tensor
preserved, and the constant tensors are read back from it, so the weights are exactly the ones
TFLite computes with.

Layout: the module takes NCHW float input (what the runtime's crop kernels and TensorRT like)
and keeps 4-D activations NCHW; where TFLite reshapes or concatenates on NHWC axes, the NHWC
order is restored first, so the result is the same numbers in the same order. 4-D outputs come
out NCHW.

Only what conversion needs lives here; at run time the product loads the exported ONNX file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Dict, List, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn


class TfliteConversionError(RuntimeError):
    """The .tflite file uses something this converter does not rebuild."""


_SAME, _VALID = 0, 1  # tflite Padding enum
_ACTIVATIONS: Dict[int, Callable[[Tensor], Tensor]] = {
    0: lambda x: x,
    1: F.relu,
    3: lambda x: torch.clamp(x, 0.0, 6.0),
}


def _litert():
    try:
        from ai_edge_litert import schema_py_generated as schema
        from ai_edge_litert.interpreter import Interpreter, OpResolverType
        from ai_edge_litert.tools import flatbuffer_utils
    except ImportError as exc:  # conversion-time only dependency
        raise TfliteConversionError(
            "converting .tflite models needs ai-edge-litert (pip install 'ai-edge-litert==2.3.0'); "
            "it is not needed at run time") from exc
    return schema, Interpreter, OpResolverType, flatbuffer_utils


def _same_pad(size: int, kernel: int, stride: int, dilation: int = 1) -> Tuple[int, int]:
    """TensorFlow's SAME padding (the extra pixel goes after)."""
    eff = (kernel - 1) * dilation + 1
    out = -(-size // stride)
    total = max((out - 1) * stride + eff - size, 0)
    return total // 2, total - total // 2


def _nhwc_axis(axis: int, rank: int) -> int:
    """NHWC axis -> NCHW axis for 4-D tensors."""
    axis = axis % rank
    return {0: 0, 1: 2, 2: 3, 3: 1}[axis] if rank == 4 else axis


class TfliteGraph(nn.Module):
    """The ops of one TFLite subgraph, executed in order (the flatbuffer stores them
    topologically sorted). ``output_names`` follow the .tflite output tensor names."""

    def __init__(self, steps: List[Tuple[str, Callable, Sequence[int], int]],
                 constants: Dict[int, np.ndarray], input_index: int,
                 output_indices: Sequence[int], output_names: Sequence[str]):
        super().__init__()
        self._steps = steps
        self._input = input_index
        self._outputs = list(output_indices)
        self.output_names = list(output_names)
        self._const_names: Dict[int, str] = {}
        for idx, value in constants.items():
            name = f"c{idx}"
            self.register_buffer(name, torch.from_numpy(np.ascontiguousarray(value)),
                                 persistent=True)
            self._const_names[idx] = name

    def forward(self, x: Tensor) -> Tuple[Tensor, ...]:
        values: Dict[int, Tensor] = {self._input: x}
        for idx, name in self._const_names.items():
            values[idx] = getattr(self, name)
        for _, fn, inputs, output in self._steps:
            values[output] = fn(*[values[i] for i in inputs])
        return tuple(values[i] for i in self._outputs)


def load_tflite(path: Path) -> TfliteGraph:
    """Rebuild ``path`` (a float .tflite with one subgraph and one image input) as a module."""
    schema, Interpreter, OpResolverType, fu = _litert()
    path = Path(path)
    model = fu.read_model(str(path))
    if len(model.subgraphs) != 1:
        raise TfliteConversionError(f"{path.name}: {len(model.subgraphs)} subgraphs, expected 1")
    graph = model.subgraphs[0]
    if len(graph.inputs) != 1:
        raise TfliteConversionError(f"{path.name}: {len(graph.inputs)} inputs, expected 1")
    names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    tensors = graph.tensors
    shape = {i: [int(s) for s in (t.shape if t.shape is not None else [])]
             for i, t in enumerate(tensors)}
    tname = {i: (t.name.decode() if isinstance(t.name, bytes) else str(t.name))
             for i, t in enumerate(tensors)}

    # Constant tensors: a buffer with data, or produced by DEQUANTIZE/DENSIFY from constants.
    constant = {i for i, t in enumerate(tensors)
                if model.buffers[t.buffer].data is not None and len(model.buffers[t.buffer].data)}
    ops = []
    for op in graph.operators:
        code = fu.get_builtin_code_from_operator_code(model.operatorCodes[op.opcodeIndex])
        kind = names.get(code, f"#{code}")
        ins = [int(i) for i in op.inputs]
        outs = [int(i) for i in op.outputs]
        if kind in ("DEQUANTIZE", "DENSIFY") and all(i in constant for i in ins):
            constant.update(outs)
            continue
        ops.append((kind, op, ins, outs))

    # Read every constant as the interpreter computes it (XNNPACK off: with it, DENSIFY's
    # outputs read back as zeros).
    interp = Interpreter(model_path=str(path), experimental_preserve_all_tensors=True,
                         experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    interp.allocate_tensors()
    inp = interp.get_input_details()[0]
    interp.set_tensor(inp["index"], np.zeros(inp["shape"], inp["dtype"]))
    interp.invoke()
    raw: Dict[int, np.ndarray] = {i: np.array(interp.get_tensor(i)) for i in constant}

    consts: Dict[int, np.ndarray] = {}
    steps: List[Tuple[str, Callable, Sequence[int], int]] = []
    used_consts = set()

    def const(i: int, value: np.ndarray) -> int:
        consts[i] = value.astype(np.float32) if value.dtype.kind == "f" else value
        used_consts.add(i)
        return i

    for kind, op, ins, outs in ops:
        o = op.builtinOptions
        out = outs[0]
        if kind == "CONV_2D" or kind == "DEPTHWISE_CONV_2D":
            x, w, b = ins[0], ins[1], ins[2] if len(ins) > 2 and ins[2] >= 0 else None
            weight = raw[w].astype(np.float32)
            if kind == "CONV_2D":
                weight = weight.transpose(0, 3, 1, 2)  # OHWI -> OIHW
                groups = 1
            else:
                if o.depthMultiplier != 1:
                    raise TfliteConversionError(f"{path.name}: depth multiplier {o.depthMultiplier}")
                weight = weight.transpose(3, 0, 1, 2)  # 1HWC -> C1HW
                groups = weight.shape[0]
            const(w, weight)
            if b is not None:
                const(b, raw[b].astype(np.float32))
            _, in_h, in_w, _ = shape[x]
            kh, kw = weight.shape[2:]
            if o.padding == _SAME:
                ph = _same_pad(in_h, kh, o.strideH, o.dilationHFactor)
                pw = _same_pad(in_w, kw, o.strideW, o.dilationWFactor)
            else:
                ph = pw = (0, 0)
            act = _activation(o.fusedActivationFunction, path)
            stride = (o.strideH, o.strideW)
            dil = (o.dilationHFactor, o.dilationWFactor)
            pad = (pw[0], pw[1], ph[0], ph[1])
            symmetric = ph[0] == ph[1] and pw[0] == pw[1]

            def conv(xv, wv, bv=None, pad=pad, stride=stride, dil=dil, groups=groups, act=act,
                     symmetric=symmetric):
                if symmetric:
                    y = F.conv2d(xv, wv, bv, stride, (pad[2], pad[0]), dil, groups)
                else:
                    y = F.conv2d(F.pad(xv, pad), wv, bv, stride, 0, dil, groups)
                return act(y)

            steps.append((kind, conv, [x, w] + ([b] if b is not None else []), out))
        elif kind == "ADD":
            act = _activation(o.fusedActivationFunction, path)
            for i in ins:
                if i in constant:
                    const(i, _to_nchw(raw[i]))
            steps.append((kind, lambda a, b, act=act: act(a + b), ins, out))
        elif kind == "PAD":
            pads = raw[ins[1]].astype(np.int64)  # (rank, 2), NHWC
            if pads.shape != (4, 2) or pads[0].any():
                raise TfliteConversionError(f"{path.name}: PAD with paddings {pads.tolist()}")
            nchw = [pads[3], pads[1], pads[2]]  # C, H, W
            torch_pad = (int(nchw[2][0]), int(nchw[2][1]), int(nchw[1][0]), int(nchw[1][1]),
                         int(nchw[0][0]), int(nchw[0][1]))
            steps.append((kind, lambda a, p=torch_pad: F.pad(a, p), ins[:1], out))
        elif kind == "RESHAPE":
            target = shape[out][1:]
            rank_in = len(shape[ins[0]])

            def reshape(a, target=target, rank_in=rank_in):
                if rank_in == 4:
                    a = a.permute(0, 2, 3, 1)  # back to NHWC element order
                y = a.reshape([a.shape[0]] + target)
                return y.permute(0, 3, 1, 2) if len(target) == 3 else y

            steps.append((kind, reshape, ins[:1], out))
        elif kind == "CONCATENATION":
            axis = _nhwc_axis(o.axis, len(shape[out]))
            act = _activation(o.fusedActivationFunction, path)
            steps.append((kind, lambda *a, axis=axis, act=act: act(torch.cat(a, axis)), ins, out))
        elif kind == "DEPTH_TO_SPACE":
            bs = int(o.blockSize)

            def d2s(a, bs=bs):  # TF order: channel index = (i * bs + j) * C + c
                n, c, h, w = a.shape
                a = a.reshape(n, bs, bs, c // (bs * bs), h, w).permute(0, 3, 4, 1, 5, 2)
                return a.reshape(n, c // (bs * bs), h * bs, w * bs)

            steps.append((kind, d2s, ins[:1], out))
        elif kind == "RESIZE_BILINEAR":
            if o.alignCorners or not o.halfPixelCenters:
                raise TfliteConversionError(f"{path.name}: RESIZE_BILINEAR needs half-pixel "
                                            "centres without align_corners")
            size = tuple(int(s) for s in shape[out][1:3])
            steps.append((kind, lambda a, size=size: F.interpolate(
                a, size=size, mode="bilinear", align_corners=False), ins[:1], out))
        elif kind == "MAX_POOL_2D":
            _, in_h, in_w, _ = shape[ins[0]]
            if o.padding == _SAME:
                ph = _same_pad(in_h, o.filterHeight, o.strideH)
                pw = _same_pad(in_w, o.filterWidth, o.strideW)
            else:
                ph = pw = (0, 0)
            act = _activation(o.fusedActivationFunction, path)
            k, s, pad = (o.filterHeight, o.filterWidth), (o.strideH, o.strideW), (*pw, *ph)
            steps.append((kind, lambda a, k=k, s=s, pad=pad, act=act: act(F.max_pool2d(
                F.pad(a, pad, value=float("-inf")) if any(pad) else a, k, s)), ins[:1], out))
        elif kind == "LOGISTIC":
            steps.append((kind, torch.sigmoid, ins[:1], out))
        else:
            raise TfliteConversionError(f"{path.name}: op {kind} is not supported")

    outputs = [int(i) for i in graph.outputs]
    module = TfliteGraph(steps, {i: consts[i] for i in used_consts}, int(graph.inputs[0]),
                         outputs, [tname[i] for i in outputs])
    module.input_shape_nhwc = tuple(shape[int(graph.inputs[0])])
    return module.eval()


def _activation(code: int, path: Path) -> Callable[[Tensor], Tensor]:
    if code not in _ACTIVATIONS:
        raise TfliteConversionError(f"{path.name}: fused activation {code} is not supported")
    return _ACTIVATIONS[code]


def _to_nchw(value: np.ndarray) -> np.ndarray:
    """A constant operand of an elementwise op: NHWC -> NCHW when 4-D (broadcasting kept)."""
    return value.transpose(0, 3, 1, 2) if value.ndim == 4 else value


def run_tflite_reference(path: Path, image_nhwc: np.ndarray) -> Dict[str, np.ndarray]:
    """Outputs of the reference TFLite interpreter for one NHWC float image (batch 1), by name:
    what conversion parity is checked against."""
    _, Interpreter, _, _ = _litert()
    interp = Interpreter(model_path=str(path))
    interp.allocate_tensors()
    inp = interp.get_input_details()[0]
    interp.set_tensor(inp["index"], np.ascontiguousarray(image_nhwc, np.float32))
    interp.invoke()
    return {d["name"]: np.array(interp.get_tensor(d["index"])) for d in interp.get_output_details()}
