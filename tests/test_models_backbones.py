"""ResNet backbones: torchvision names, shapes and parameter counts, strict checkpoint loading."""

from __future__ import annotations

import pytest
import torch

from hmr_ros.models import resnet

#: torchvision's published parameter counts (fc included): torchvision.models docs
PUBLISHED_PARAMS = {"resnet18": 11_689_512, "resnet34": 21_797_672, "resnet50": 25_557_032}
#: (bottleneck?, blocks per stage), written out from torchvision's resnet.py independently
LAYOUT = {"resnet18": (False, (2, 2, 2, 2)), "resnet34": (False, (3, 4, 6, 3)),
          "resnet50": (True, (3, 4, 6, 3))}


def _bn(prefix):
    return [f"{prefix}.{k}" for k in ("weight", "bias", "running_mean", "running_var",
                                      "num_batches_tracked")]


def torchvision_keys(name):
    """state_dict keys torchvision would produce, from its naming rules."""
    bottleneck, blocks = LAYOUT[name]
    keys = ["conv1.weight", *_bn("bn1")]
    for stage, count in enumerate(blocks, start=1):
        for b in range(count):
            p = f"layer{stage}.{b}"
            for c in range(1, 4 if bottleneck else 3):
                keys += [f"{p}.conv{c}.weight", *_bn(f"{p}.bn{c}")]
            if b == 0 and (stage > 1 or bottleneck):
                keys += [f"{p}.downsample.0.weight", *_bn(f"{p}.downsample.1")]
    return keys + ["fc.weight", "fc.bias"]


@pytest.fixture(scope="module", params=sorted(PUBLISHED_PARAMS))
def named_net(request):
    return request.param, resnet(request.param)


def test_parameter_count_matches_torchvision(named_net):
    name, net = named_net
    assert sum(p.numel() for p in net.parameters()) == PUBLISHED_PARAMS[name]


def test_state_dict_keys_match_torchvision_naming(named_net):
    name, net = named_net
    assert list(net.state_dict().keys()) == torchvision_keys(name)


def test_selected_shapes(named_net):
    name, net = named_net
    sd = net.state_dict()
    wide = name == "resnet50"
    assert sd["conv1.weight"].shape == (64, 3, 7, 7)
    assert sd["fc.weight"].shape == (1000, 2048 if wide else 512)
    assert sd["layer4.0.downsample.0.weight"].shape == (
        (2048, 1024, 1, 1) if wide else (512, 256, 1, 1))
    # v1.5: the stride sits on the 3x3 conv of a bottleneck, on conv1 of a basic block
    strided = net.layer2[0].conv2 if wide else net.layer2[0].conv1
    assert strided.stride == (2, 2)
    assert net.out_channels == (2048 if wide else 512)


def test_forward_returns_layer4_map(named_net):
    name, net = named_net
    out = net.eval()(torch.randn(1, 3, 64, 96))
    assert out.shape == (1, net.out_channels, 2, 3)


def test_strict_round_trip_through_checkpoint_file(tmp_path):
    src = resnet("resnet18")
    with torch.no_grad():
        src.bn1.running_mean.uniform_()
    path = tmp_path / "resnet18.pth"
    torch.save(src.state_dict(), path)
    dst = resnet("resnet18", pretrained_path=path)
    for key, value in src.state_dict().items():
        assert torch.equal(dst.state_dict()[key], value), key


def test_strict_load_rejects_foreign_keys():
    net = resnet("resnet18")
    state = net.state_dict()
    state["layer5.0.conv1.weight"] = torch.zeros(1)
    with pytest.raises(RuntimeError, match="Unexpected key"):
        net.load_state_dict(state, strict=True)


def test_unknown_backbone_name():
    with pytest.raises(ValueError, match="resnet101"):
        resnet("resnet101")
