"""ResNet-18/34/50 feature extractors, parameter-compatible with torchvision.

torchvision has no CPU build on our machines, but its ImageNet checkpoints are what every HMR
model starts from. So the networks are written here with torchvision's exact module names and
shapes (``conv1, bn1, layer1..layer4[i].{conv1,bn1,conv2,bn2[,conv3,bn3],downsample.{0,1}}, fc``)
and a torchvision ``state_dict`` loads with ``strict=True``.

``fc`` is kept in the module only so that those checkpoints load strictly (a missing or extra key
is then always an error worth seeing); ``forward`` never uses it and returns the layer4 feature map
(B x out_channels x H/32 x W/32). Exported graphs do not contain it (unused parameters are not
traced). ResNet-50 is "v1.5" (stride on the 3x3 conv of a bottleneck), as in torchvision.
"""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional, Type, Union

import torch
from torch import Tensor, nn

__all__ = ["BasicBlock", "Bottleneck", "IMAGE_MEAN", "IMAGE_STD", "ResNet", "RESNET_SPECS",
           "resnet"]

#: ImageNet RGB normalisation the checkpoints were trained with: x = (rgb/255 - mean) / std
IMAGE_MEAN = (0.485, 0.456, 0.406)
IMAGE_STD = (0.229, 0.224, 0.225)


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
