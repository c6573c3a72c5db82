"""OCHMR (paper 001): shapes, CoNorm's use of the context, stage placement, overfitting, ONNX."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from hmr_ros.kernels import torch_ops as ops
from hmr_ros.models.ochmr import OCHMR, OCHMR_OUTPUTS, CoNorm, OCHMRConfig, centre_maps

CROP = 64  # small crops keep the file fast on 2 cores; the network is size-agnostic
LIGHT = "efficientnet_lite0"


def _config(**overrides) -> OCHMRConfig:
    base = dict(backbone=LIGHT, crop_size=CROP, centre_map_size=16, regressor_dropout=0.0,
                regressor_hidden=256)
    base.update(overrides)
    return OCHMRConfig(**base)


def _context(batch: int, size: int = 16, seed: int = 0) -> torch.Tensor:
    """Real centre maps: people at random boxes, each crop showing the whole 100x100 frame."""
    rng = np.random.default_rng(seed)
    corners = rng.uniform(0, 60, size=(batch, 2))
    boxes = np.concatenate([corners, corners + 40], axis=1)
    crops = np.tile([0.0, 0.0, 100.0, 100.0], (batch, 1))
    return torch.from_numpy(centre_maps(boxes, crops, size, sigma=0.1))


def _eval_model(config: OCHMRConfig) -> OCHMR:
    """A randomly initialised model in eval mode with BatchNorm statistics measured on a few
    batches: a fresh EfficientNet-Lite's default running statistics make its activations vanish
    in eval mode, which would make every eval comparison below trivially pass."""
    model = OCHMR(config)
    for module in model.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.reset_running_stats()
            module.momentum = None  # cumulative average over the calibration batches
    model.train()
    with torch.no_grad():
        for seed in range(3):
            model(torch.randn(4, 3, config.crop_size, config.crop_size), _context(4, seed=seed))
    return model.eval()


@pytest.mark.parametrize("batch", [1, 3])
def test_output_shapes(batch):
    torch.manual_seed(0)
    model = _eval_model(_config())
    with torch.no_grad():
        out = model(torch.randn(batch, 3, CROP, CROP), _context(batch))
    assert out["rotmats"].shape == (batch, 24, 3, 3)
    assert out["betas"].shape == (batch, 10)
    assert out["cam"].shape == (batch, 3)
    eye = torch.eye(3).expand(batch, 24, 3, 3)
    rrt = out["rotmats"] @ out["rotmats"].transpose(-1, -2)
    assert torch.allclose(rrt, eye, atol=1e-5)  # valid rotations from the 6D regression


def test_conorm_output_depends_on_context():
    torch.manual_seed(0)
    block = CoNorm(num_channels=8, latent_channels=16).eval()
    features = torch.randn(2, 8, 12, 12)
    zero = block(features, torch.zeros(2, 2, 48, 48))
    first = block(features, _context(2, 48, seed=1))
    second = block(features, _context(2, 48, seed=2))
    assert first.shape == features.shape
    assert (first - zero).abs().max() > 1e-3
    assert (first - second).abs().max() > 1e-3
    # the listing's form: the same context gives the same modulation
    assert torch.equal(first, block(features, _context(2, 48, seed=1)))


def test_model_output_depends_on_context():
    torch.manual_seed(0)
    model = _eval_model(_config())
    images = torch.randn(2, 3, CROP, CROP)
    with torch.no_grad():
        a = model(images, _context(2, seed=1))["rot6d"]
        b = model(images, _context(2, seed=2))["rot6d"]
    assert (a - b).abs().max() > 1e-4


def test_conorm_rejects_wrong_context_channels():
    with pytest.raises(ValueError, match="2 channels"):
        CoNorm(4)(torch.randn(1, 4, 8, 8), torch.zeros(1, 3, 8, 8))


@pytest.mark.parametrize("stages", [(1,), (2,), (3,), (4,), (1, 2, 3, 4)])
@pytest.mark.parametrize("backbone", [LIGHT, "resnet18"])
def test_conorm_placement_builds_and_runs(stages, backbone):
    torch.manual_seed(0)
    model = _eval_model(_config(backbone=backbone, conorm_stages=stages))
    assert sorted(int(k) for k in model.conorm) == list(stages)
    with torch.no_grad():
        out = model(torch.randn(2, 3, CROP, CROP), _context(2))
    assert out["rotmats"].shape == (2, 24, 3, 3)
    assert torch.isfinite(out["cam"]).all()


def test_stage_split_equals_backbone_without_conorm():
    """The four-stage run is the backbone's own forward when no CoNorm intervenes."""
    for backbone in (LIGHT, "resnet18"):
        torch.manual_seed(0)
        model = _eval_model(_config(backbone=backbone))
        model.conorm = torch.nn.ModuleDict()
        images = torch.randn(2, 3, CROP, CROP)
        with torch.no_grad():
            assert torch.allclose(model.features(images, _context(2)), model.backbone(images),
                                  atol=1e-6)


def test_config_rejects_bad_values():
    with pytest.raises(ValueError, match="conorm_stages"):
        OCHMRConfig(conorm_stages=(5,))
    with pytest.raises(ValueError, match="conorm_stages"):
        OCHMRConfig(conorm_stages=())
    with pytest.raises(ValueError, match="backbone"):
        OCHMRConfig(backbone="vgg16")
    with pytest.raises(ValueError, match="crop_size"):
        OCHMRConfig(crop_size=100)
    assert OCHMRConfig().conorm_stages == (2,)  # the paper's best placement is the default


def test_model_rejects_mismatched_context():
    model = _eval_model(_config())
    with pytest.raises(ValueError, match="context"):
        model(torch.randn(2, 3, CROP, CROP), torch.zeros(3, 2, 16, 16))


def test_centre_maps_peaks_and_keypoints():
    boxes = [[10, 10, 30, 50], [60, 20, 80, 60]]
    crops = [[0, 0, 100, 100], [50, 0, 100, 100]]
    maps = centre_maps(boxes, crops, 20, sigma=0.05)
    assert maps.shape == (2, 2, 20, 20) and maps.dtype == np.float32
    # person 0's centre (20, 30) in crop 0 (100 px -> 20 map px): map position (y 5.5, x 3.5)
    # (map pixel centres at 3.5, 5.5: a tie between neighbours, so any of the four)
    assert np.unravel_index(maps[0, 0].argmax(), (20, 20)) in {(5, 3), (5, 4), (6, 3), (6, 4)}
    # the global map holds both people (person 1 at (70, 40) -> crop 0 pixel (8, 14))
    assert maps[0, 1, 8, 13:15].max() > 0.5 and maps[0, 1].max() <= 1.0
    # person 1's own crop spans x 50..100: its centre is at map x (70-50)/50*20 = 8
    assert maps[1, 0, 7:9, 7:9].max() > 0.5
    # confident keypoints move the centre away from the box centre
    kps = np.zeros((2, 3, 3))
    kps[0] = [[12, 12, 1.0], [14, 14, 1.0], [90, 90, 0.0]]  # mean (13, 13), third ignored
    moved = centre_maps(boxes, crops, 20, keypoints=kps, sigma=0.05)
    assert np.unravel_index(moved[0, 0].argmax(), (20, 20)) in {(2, 2), (2, 3), (3, 2), (3, 3)}
    assert np.allclose(moved[1, 0], maps[1, 0])  # no confident keypoints: box centre kept
    with pytest.raises(ValueError, match="crop box"):
        centre_maps(boxes, crops[:1], 20)


def test_overfits_a_fixed_tiny_batch():
    """Every loss term (rotation, β, camera) falls by a large factor on a fixed batch."""
    torch.manual_seed(0)
    model = OCHMR(_config(conorm_stages=(2,))).train()
    images = torch.randn(3, 3, CROP, CROP)
    context = _context(3)
    target_rot = ops.axis_angle_to_matrix(0.6 * torch.randn(3, 24, 3))
    target_betas = torch.randn(3, 10)
    target_cam = torch.tensor([[0.7, 0.1, -0.1], [1.1, -0.2, 0.05], [0.8, 0.0, 0.2]])
    optim = torch.optim.Adam(model.parameters(), lr=1e-3)

    def losses():
        out = model(images, context)
        return {"rot": ((out["rotmats"] - target_rot) ** 2).mean(),
                "betas": ((out["betas"] - target_betas) ** 2).mean(),
                "cam": ((out["cam"] - target_cam) ** 2).mean()}

    first = {k: float(v.detach()) for k, v in losses().items()}
    for _ in range(120):
        terms = losses()
        optim.zero_grad()
        sum(terms.values()).backward()
        optim.step()
    last = {k: float(v.detach()) for k, v in losses().items()}
    print("overfit losses first -> last:", {k: (first[k], last[k]) for k in first})
    for name in first:
        assert last[name] < first[name] / 10, (name, first[name], last[name])


def test_onnx_export_dynamic_batch_matches_torch(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    torch.manual_seed(0)
    model = _eval_model(_config(conorm_stages=(2, 3)))

    class Graph(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, images, context):
            out = self.m(images, context)
            return tuple(out[k] for k in OCHMR_OUTPUTS)

    path = tmp_path / "ochmr.onnx"
    names = ("images", "context", *OCHMR_OUTPUTS)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(Graph(model).eval(), (torch.randn(2, 3, CROP, CROP), _context(2)),
                          str(path), dynamo=False, opset_version=17,
                          input_names=["images", "context"], output_names=list(OCHMR_OUTPUTS),
                          dynamic_axes={n: {0: "batch"} for n in names},
                          do_constant_folding=True)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for batch in (1, 4):
        images = torch.randn(batch, 3, CROP, CROP)
        context = _context(batch, seed=batch)
        with torch.no_grad():
            expected = model(images, context)
        got = session.run(list(OCHMR_OUTPUTS), {"images": images.numpy(),
                                                "context": context.numpy()})
        for name, value in zip(OCHMR_OUTPUTS, got):
            assert value.shape == tuple(expected[name].shape)
            np.testing.assert_allclose(value, expected[name].numpy(), atol=1e-4, rtol=1e-4)
