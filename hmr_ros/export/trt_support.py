"""Static check that exported graphs are ones TensorRT's ONNX parser can build.

TensorRT cannot be installed on the build machines, so compatibility is checked on the graph:
every node's op type must be one the parser supports, in the default ONNX domain, at an opset
the parser accepts; ops that draw random numbers are refused too, because stage graphs take
their noise (``z``) as an input by design. The list below is TensorRT 10.1's (onnx-tensorrt
``docs/operators.md``, "Supported: Y" rows); bump it together with ``TENSORRT_VERSION`` when
targeting another release.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, List, Union

TENSORRT_VERSION = "10.1"
OPSET_RANGE = (9, 20)  # inclusive

SUPPORTED_OPS = frozenset("""
Abs Acos Acosh Add And ArgMax ArgMin Asin Asinh Atan Atanh AveragePool BatchNormalization Cast
CastLike Ceil Celu Clip Concat Constant ConstantOfShape Conv ConvTranspose Cos Cosh CumSum
DeformConv DepthToSpace DequantizeLinear Div Dropout Einsum Elu Equal Erf Exp Expand EyeLike
Flatten Floor Gather GatherElements GatherND Gelu Gemm GlobalAveragePool GlobalLpPool
GlobalMaxPool Greater GreaterOrEqual GridSample GroupNormalization GRU HardSigmoid HardSwish
Hardmax Identity If ImageScaler InstanceNormalization IsInf IsNaN LayerNormalization LeakyRelu
Less LessOrEqual Log LogSoftmax Loop LRN LSTM LpNormalization LpPool MatMul Max MaxPool Mean
MeanVarianceNormalization Min Mish Mod Mul Neg NonMaxSuppression NonZero Not OneHot Or Pad
ParametricSoftplus Pow PRelu QuantizeLinear RandomNormal RandomNormalLike RandomUniform
RandomUniformLike Range Reciprocal ReduceL1 ReduceL2 ReduceLogSum ReduceLogSumExp ReduceMax
ReduceMean ReduceMin ReduceProd ReduceSum ReduceSumSquare Relu Reshape Resize ReverseSequence
RNN RoiAlign Round ScaledTanh Scan Scatter ScatterElements ScatterND Selu Shape Shrink Sigmoid
Sign Sin Sinh Size Slice Softmax Softplus Softsign SpaceToDepth Split Sqrt Squeeze Sub Sum Tan
Tanh ThresholdedRelu Tile TopK Transpose Trilu Unsqueeze Upsample Where Xor
""".split())

#: Supported by TensorRT but refused in our stage graphs: noise is an input, never drawn inside.
FORBIDDEN_OPS = frozenset({"RandomNormal", "RandomNormalLike", "RandomUniform",
                           "RandomUniformLike", "Bernoulli", "Multinomial"})


@dataclass(frozen=True)
class Problem:
    """One reason a graph would not build (or must not be shipped)."""

    node: str
    op_type: str
    reason: str

    def __str__(self) -> str:
        return f"{self.op_type} ({self.node or 'unnamed'}): {self.reason}"


def _nodes(graph) -> Iterable:
    for node in graph.node:
        yield node
        for attr in node.attribute:  # If/Loop/Scan bodies
            if attr.g is not None and len(attr.g.node):
                yield from _nodes(attr.g)
            for g in attr.graphs:
                yield from _nodes(g)


def check_tensorrt_compat(model: Union[str, Path, "onnx.ModelProto"]) -> List[Problem]:
    """Problems that would stop TensorRT from parsing ``model``; empty when it is fine."""
    import onnx

    if not isinstance(model, onnx.ModelProto):
        model = onnx.load(str(model), load_external_data=False)
    problems: List[Problem] = []
    for imp in model.opset_import:
        if imp.domain in ("", "ai.onnx") and not OPSET_RANGE[0] <= imp.version <= OPSET_RANGE[1]:
            problems.append(Problem("", "opset", f"opset {imp.version} outside TensorRT "
                                    f"{TENSORRT_VERSION}'s range {OPSET_RANGE}"))
    for node in _nodes(model.graph):
        if node.domain not in ("", "ai.onnx"):
            problems.append(Problem(node.name, node.op_type,
                                    f"custom domain '{node.domain}' needs a TensorRT plugin"))
        elif node.op_type in FORBIDDEN_OPS:
            problems.append(Problem(node.name, node.op_type,
                                    "random sampling inside the graph (pass noise as an input)"))
        elif node.op_type not in SUPPORTED_OPS:
            problems.append(Problem(node.name, node.op_type,
                                    f"not supported by TensorRT {TENSORRT_VERSION}'s ONNX parser"))
    return problems
