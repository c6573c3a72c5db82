"""HRNet-W32 trunk as InstanceHMR / ROMP use it: the stride-4, 32-channel branch of stage 4.

Written from the structure of HRNet (Wang et al., TPAMI 2021) with the module names of ROMP's
``HigherResolutionNet`` (``conv1, bn1, conv2, bn2, layer1, transition1..3, stage2..4`` with
``branches`` / ``fuse_layers`` inside each ``HighResolutionModule``), so the authors' released
checkpoints load key for key. Stage 4 fuses into the highest-resolution branch only: the output
is B x 32 x H/4 x W/4.

The released weights were trained on ``rgb / 255 * 2 - 1``; :class:`HRNetW32` takes the package's
ImageNet-normalised input and converts it in its first op (a fixed affine, no parameters).
"""

from __future__ import annotations

from typing import List, Optional, Sequence, Tuple

import torch
from torch import Tensor, nn

from .backbones import IMAGE_MEAN, IMAGE_STD, BasicBlock, Bottleneck

__all__ = ["HRNetW32", "HighResolutionModule"]

#: (modules, branch channels) of stages 2, 3, 4; four BasicBlocks per branch, as HRNet-W32
_STAGES = ((1, (32, 64)), (4, (32, 64, 128)), (3, (32, 64, 128, 256)))
_BLOCKS_PER_BRANCH = 4


def _conv_bn(in_ch: int, out_ch: int, kernel: int, stride: int, relu: bool) -> nn.Sequential:
    layers: List[nn.Module] = [nn.Conv2d(in_ch, out_ch, kernel, stride, kernel // 2, bias=False),
                               nn.BatchNorm2d(out_ch)]
    if relu:
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


def _branch(in_ch: int, out_ch: int, blocks: int) -> nn.Sequential:
    downsample = None
    if in_ch != out_ch:
        downsample = nn.Sequential(nn.Conv2d(in_ch, out_ch, 1, bias=False), nn.BatchNorm2d(out_ch))
    layers = [BasicBlock(in_ch, out_ch, 1, downsample)]
    layers += [BasicBlock(out_ch, out_ch) for _ in range(1, blocks)]
    return nn.Sequential(*layers)


class HighResolutionModule(nn.Module):
    """Parallel branches, then every output resolution sums all branches resized to it.

    ``fuse_layers[i][j]``: branch j -> resolution i (1x1 conv + BN + nearest upsampling when j is
    coarser, a chain of stride-2 3x3 convs when finer, ``None`` for j == i). With
    ``multi_scale_output=False`` only resolution 0 is produced.
    """

    def __init__(self, channels: Sequence[int], blocks: int, multi_scale_output: bool) -> None:
        super().__init__()
        n = len(channels)
        self.branches = nn.ModuleList(_branch(c, c, blocks) for c in channels)
        fuse = []
        for i in range(n if multi_scale_output else 1):
            row: List[Optional[nn.Module]] = []
            for j in range(n):
                if j > i:
                    row.append(nn.Sequential(
                        nn.Conv2d(channels[j], channels[i], 1, 1, 0, bias=False),
                        nn.BatchNorm2d(channels[i]),
                        nn.Upsample(scale_factor=2 ** (j - i), mode="nearest")))
                elif j == i:
                    row.append(None)
                else:
                    steps = [_conv_bn(channels[j], channels[j], 3, 2, relu=True)
                             for _ in range(i - j - 1)]
                    steps.append(_conv_bn(channels[j], channels[i], 3, 2, relu=False))
                    row.append(nn.Sequential(*steps))
            fuse.append(nn.ModuleList(row))
        self.fuse_layers = nn.ModuleList(fuse)
        self.relu = nn.ReLU(inplace=False)

    def forward(self, xs: List[Tensor]) -> List[Tensor]:
        xs = [branch(x) for branch, x in zip(self.branches, xs)]
        out = []
        for i, row in enumerate(self.fuse_layers):
            y = xs[i]
            for j, layer in enumerate(row):
                if j != i:
                    y = y + layer(xs[j])
            out.append(self.relu(y))
        return out


class HRNetW32(nn.Module):
    """Image (ImageNet-normalised) -> B x 32 x H/4 x W/4 (``out_channels`` = 32)."""

    out_channels = 32

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 3, 2, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.conv2 = nn.Conv2d(64, 64, 3, 2, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        down = nn.Sequential(nn.Conv2d(64, 256, 1, bias=False), nn.BatchNorm2d(256))
        self.layer1 = nn.Sequential(Bottleneck(64, 64, 1, down),
                                    *[Bottleneck(256, 64) for _ in range(3)])
        previous: Tuple[int, ...] = (256,)
        for index, (modules, channels) in enumerate(_STAGES, start=1):
            setattr(self, f"transition{index}", self._transition(previous, channels))
            last = index == len(_STAGES)
            setattr(self, f"stage{index + 1}", nn.Sequential(*[
                HighResolutionModule(channels, _BLOCKS_PER_BRANCH,
                                     multi_scale_output=not (last and m == modules - 1))
                for m in range(modules)]))
            previous = channels
        # ImageNet-normalised x -> the released weights' rgb * 2 - 1: x * 2 std + (2 mean - 1)
        std, mean = torch.tensor(IMAGE_STD), torch.tensor(IMAGE_MEAN)
        self.register_buffer("_in_scale", (2 * std).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("_in_shift", (2 * mean - 1).view(1, 3, 1, 1), persistent=False)

    @staticmethod
    def _transition(previous: Sequence[int], current: Sequence[int]) -> nn.ModuleList:
        """Keep, re-channel or (for a new, coarser branch) downsample the last branch."""
        layers: List[Optional[nn.Module]] = []
        for i, channels in enumerate(current):
            if i < len(previous):
                layers.append(None if channels == previous[i] else
                              _conv_bn(previous[i], channels, 3, 1, relu=True))
            else:
                steps = [_conv_bn(previous[-1], previous[-1], 3, 2, relu=True)
                         for _ in range(i - len(previous))]
                steps.append(_conv_bn(previous[-1], channels, 3, 2, relu=True))
                layers.append(nn.Sequential(*steps))
        return nn.ModuleList(layers)

    def forward(self, x: Tensor) -> Tensor:
        x = x * self._in_scale + self._in_shift
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.relu(self.bn2(self.conv2(x)))
        ys = [self.layer1(x)]
        for index in range(1, len(_STAGES) + 1):
            transition = getattr(self, f"transition{index}")
            xs = [ys[i] if layer is None else layer(ys[min(i, len(ys) - 1)])
                  for i, layer in enumerate(transition)]
            ys = getattr(self, f"stage{index + 1}")(xs)
        return ys[0]
