"""InstanceHMR (paper 002): shapes, rest pose at init, the release's key layout, losses (eqs. 1-4
by hand), targets from synthetic data, overfitting, ONNX export and the released-checkpoint
import."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from hmr_ros.body import procedural_body
from hmr_ros.data.synthetic import SyntheticGenerator
from hmr_ros.data.synthetic.config import SynthConfig
from hmr_ros.data.synthetic.dataset import to_tensors
from hmr_ros.kernels import torch_ops as ops
from hmr_ros.models.instancehmr import (CAM_SCALE_INIT, PARAM_DIM, InstanceHMR,
                                        InstanceHMRConfig, InstanceHMRLoss, build_targets,
                                        focal_heatmap_loss, instance_contrastive_loss,
                                        procrustes_align)
from hmr_ros.train.param_regressor import BodyLBS

DATA = Path(__file__).parent / "data"
SIZE = 128  # input side of the small configurations (maps 16 x 16)


def _tiny(**overrides) -> InstanceHMRConfig:
    base = dict(backbone="tiny", input_size=SIZE, head_channels=32, instance_channels=32,
                param_channels=32, tiny_channels=16)
    base.update(overrides)
    return InstanceHMRConfig(**base)


def _synthetic_batch(count: int, size: int = SIZE) -> dict:
    """``count`` multi-person synthetic samples (whole images), collated."""
    gen = SyntheticGenerator(SynthConfig(size=size), seed=3)
    samples = [to_tensors(gen.render(gen.scene(i, force_multi=True)), aliases=False)
               for i in range(count)]
    return {k: torch.stack([s[k] for s in samples]) for k in samples[0]}


@pytest.fixture(scope="module")
def body_lbs():
    return BodyLBS("procedural")


def test_output_shapes_and_rest_pose_at_init():
    torch.manual_seed(0)
    model = InstanceHMR(_tiny()).eval()
    with torch.no_grad():
        out = model(torch.randn(2, 3, SIZE, SIZE))
    h = SIZE // 8
    assert out["centre_heatmap"].shape == (2, 1, h, h)
    assert out["joint_heatmaps"].shape == (2, 24, h, h)
    assert out["centre_embed"].shape == out["joint_embed"].shape == (2, 64, h, h)
    assert out["param_map"].shape == (2, PARAM_DIM, h, h)
    decoded = model.decode_params(out["param_map"].permute(0, 2, 3, 1).reshape(-1, PARAM_DIM))
    eye = torch.eye(3).expand_as(decoded["rotmats"])
    assert (decoded["rotmats"] - eye).abs().max() < 0.05
    assert decoded["betas"].abs().max() < 0.05
    assert torch.allclose(decoded["cam"][:, 0], torch.full((2 * h * h,), CAM_SCALE_INIT),
                          atol=0.02)
    assert decoded["cam"][:, 1:].abs().max() < 0.05
    # heatmaps start at the 0.1 prior, not at 0.5
    assert torch.sigmoid(out["centre_heatmap"]).mean() < 0.2
    with pytest.raises(ValueError, match="3 x 128 x 128"):
        model(torch.zeros(1, 3, 96, 96))


def test_decode_reads_the_release_layout():
    """6D in the release's row-interleaved order, body pose axis-angle, hands identity, and the
    release's camera x = s X + t' returned as ours x = s (X + t)."""
    torch.manual_seed(1)
    orient = ops.axis_angle_to_matrix(torch.randn(3, 3))
    body_aa = 0.5 * torch.randn(3, 21, 3)
    betas = torch.randn(3, 10)
    cam = torch.tensor([[0.5, 0.2, -0.1], [1.2, 0.0, 0.3], [0.8, -0.4, 0.4]])
    release_6d = orient[:, :, :2].reshape(3, 6)  # view(3, 2): (R00, R01, R10, R11, R20, R21)
    vectors = torch.cat([cam, release_6d, body_aa.reshape(3, 63), betas], 1)
    out = InstanceHMR.decode_params(vectors)
    assert torch.allclose(out["rotmats"][:, 0], orient, atol=1e-5)
    assert torch.allclose(out["rotmats"][:, 1:22], ops.axis_angle_to_matrix(body_aa), atol=1e-5)
    assert torch.allclose(out["rotmats"][:, 22:], torch.eye(3).expand(3, 2, 3, 3))
    assert torch.equal(out["betas"], betas)
    points = torch.randn(3, 5, 3)
    release_proj = cam[:, None, :1] * points[..., :2] + cam[:, None, 1:]
    ours = out["cam"][:, None, :1] * (points[..., :2] + out["cam"][:, None, 1:])
    assert torch.allclose(release_proj, ours, atol=1e-6)


def _reference_keys(backbone: str):
    lines = (DATA / f"instancehmr_reference_keys_{backbone}.txt").read_text().splitlines()
    rows = [line.split() for line in lines if line and not line.startswith("#")]
    return [(r[0], () if r[1] == "scalar" else tuple(int(x) for x in r[1:])) for r in rows]


@pytest.mark.parametrize("backbone", ["hrnet_w32", "resnet50"])
def test_state_dict_matches_the_release(backbone):
    """Keys (in order) and shapes of the authors' model, dumped from their class (file header)."""
    with torch.device("meta"):
        model = InstanceHMR(InstanceHMRConfig(backbone=backbone))
    ours = [(k, tuple(v.shape)) for k, v in model.state_dict().items()]
    reference = _reference_keys(backbone)
    assert len(reference) > 500
    assert ours == reference


def test_contrastive_loss_pushes_centres_and_pulls_joints():
    """Eqs. 1-2 on hand-made features: joints sharing their centre's direction and centres far
    apart give the minimum (push 0 for opposite centres, pull 0); random features give more."""
    torch.manual_seed(0)
    valid = torch.tensor([[True, True, False]])
    vis = torch.zeros(1, 3, 24, dtype=torch.bool)
    vis[0, 0, :10] = vis[0, 1, 5:20] = True
    vis[0, 2] = True  # an invalid person's joints never count
    direction = torch.randn(16)
    centres = torch.stack([direction, -direction, torch.randn(16)])[None]
    joints = centres[:, :, None].expand(1, 3, 24, 16) * torch.rand(1, 3, 24, 1).add(0.5)
    push, pull = instance_contrastive_loss(centres, joints, valid, vis)
    assert push.item() == pytest.approx(0.0, abs=1e-6)
    assert pull.item() == pytest.approx(0.0, abs=1e-6)
    # identical centres: push = 1 + 1
    push_same, _ = instance_contrastive_loss(centres[:, [0, 0, 2]], joints, valid, vis)
    assert push_same.item() == pytest.approx(2.0, abs=1e-6)
    rand_push, rand_pull = instance_contrastive_loss(torch.randn(1, 3, 16),
                                                     torch.randn(1, 3, 24, 16), valid, vis)
    assert rand_push > push and rand_pull > pull + 0.5
    # pull by hand: per person mean over its visible joints of 1 - cos, then mean over people
    u, v = torch.randn(1, 3, 16), torch.randn(1, 3, 24, 16)
    _, got = instance_contrastive_loss(u, v, valid, vis)
    cos = torch.nn.functional.cosine_similarity(u[:, :, None], v, dim=-1)[0]
    expected = 0.5 * ((1 - cos[0, :10]).mean() + (1 - cos[1, 5:20]).mean())
    assert got.item() == pytest.approx(expected.item(), rel=1e-5)
    # one person: no pairs, push is 0
    alone, _ = instance_contrastive_loss(u, v, torch.tensor([[True, False, False]]), vis)
    assert alone.item() == 0.0


def test_focal_loss_matches_eq3_by_hand():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(2, 6, 6))
    target = np.exp(-((np.arange(6)[:, None] - 2) ** 2 + (np.arange(6)[None] - 3) ** 2) / 2.0)
    target = np.stack([target, np.zeros((6, 6))])  # second image: nobody
    h = np.clip(1 / (1 + np.exp(-logits)), 1e-4, 1 - 1e-4)
    pos = target == 1.0
    expected = -(np.sum(np.log(h) * (1 - h) ** 2 * pos)
                 + np.sum(np.log(1 - h) * h ** 2 * (1 - target) ** 4 * ~pos)) / pos.sum()
    got = focal_heatmap_loss(torch.tensor(logits), torch.tensor(target))
    assert got.item() == pytest.approx(expected, rel=1e-9)


def test_procrustes_align_recovers_a_similarity():
    torch.manual_seed(0)
    gt = torch.randn(2, 24, 3, dtype=torch.float64)
    rot = ops.axis_angle_to_matrix(torch.randn(2, 3, dtype=torch.float64))
    pred = 1.7 * gt @ rot + torch.randn(2, 1, 3, dtype=torch.float64)
    assert torch.allclose(procrustes_align(pred, gt), gt, atol=1e-9)


def test_targets_from_synthetic_samples():
    batch = _synthetic_batch(2)
    cfg = _tiny()
    t = build_targets(batch, cfg)
    h = cfg.map_size
    assert t["images"].shape == (2, 3, SIZE, SIZE)
    assert t["valid"].sum() >= 4  # force_multi: at least two people per image
    # centres: torso centre of the 2D joints, in map pixels (image px * h / side)
    kp = batch["people_keypoints2d"] * h / SIZE
    assert torch.allclose(t["centres"], kp[:, :, [1, 2, 16, 17]].mean(2))
    assert torch.allclose(t["cam"], batch["people_cam_crop"])
    assert torch.allclose(t["joints3d"][:, :, 0], torch.zeros(2, 4, 3))
    # a unit peak at each valid person's centre cell, nothing where nobody is
    cells = t["centres"].floor().long()
    for b, m in t["valid"].nonzero().tolist():
        assert t["centre_heatmap"][b, 0, cells[b, m, 1], cells[b, m, 0]] == 1.0
    assert t["joint_heatmaps"].shape == (2, 24, h, h)
    seen = t["joints2d_vis"].sum().item()
    peaks = (t["joint_heatmaps"] == 1.0).sum().item()
    assert 0 < peaks <= seen


def test_overfits_a_fixed_batch(body_lbs):
    """Every term of eq. 5 falls on a fixed tiny batch -- but the prior |β|², which grows as β
    fits the ground truth's non-zero shapes."""
    torch.manual_seed(0)
    cfg = _tiny(input_size=96)  # 12 x 12 maps: enough for two or three people, quick
    model = InstanceHMR(cfg).train()
    loss_fn = InstanceHMRLoss(body_lbs)
    targets = build_targets(_synthetic_batch(2, size=96), cfg)
    images = targets.pop("images")
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    history = []
    for _ in range(40):
        terms = loss_fn(model(images), targets, projectors=model)
        history.append({k: float(v.detach()) for k, v in terms.items()})
        opt.zero_grad()
        terms["total"].backward()
        opt.step()
    first, last = history[0], history[-1]
    for key in ("centre_map", "joint_map", "push", "pull", "pose", "shape", "joints3d",
                "pa_joints3d", "keypoints2d", "cam", "total"):
        assert last[key] < first[key], (key, first[key], last[key])
    assert last["total"] < 0.5 * first["total"]


def test_export_matches_torch_and_passes_the_tensorrt_op_check(tmp_path):
    from hmr_ros.export.instancehmr_export import export_instancehmr
    import onnxruntime as ort

    torch.manual_seed(0)
    model = InstanceHMR(_tiny())
    manifest = export_instancehmr(model, tmp_path, body=procedural_body())
    assert manifest.model == "instancehmr" and set(manifest.stages) == {"maps", "decode"}
    assert manifest.preprocessing["letterbox"] and manifest.preprocessing["input_size"] == SIZE
    centres = manifest.heads["centres"]
    assert centres["stride"] == 8 and manifest.heads["param_dim"] == PARAM_DIM
    decode = manifest.stages["decode"]
    K = centres["max_people"]
    assert [(t.name, t.shape, t.dtype) for t in decode.inputs] == [
        ("param_map", ("batch", PARAM_DIM, 16, 16), "float32"),
        ("index", ("batch", K), "int32")]  # only the batch axis varies (TensorRT profiles)
    assert [t.shape for t in decode.outputs] == [("batch", K, 24, 3, 3), ("batch", K, 10),
                                                 ("batch", K, 3)]
    saved = json.loads((tmp_path / "manifest.json").read_text())
    assert saved["heads"]["bottom_up"] is True
    # an independent run: the graph of a real image batch and K decoded slots
    images = torch.randn(1, 3, SIZE, SIZE)
    with torch.no_grad():
        out = model.eval()(images)
    sess = ort.InferenceSession(str(tmp_path / "maps.onnx"), providers=["CPUExecutionProvider"])
    prob, params = sess.run(None, {"images": images.numpy()})
    np.testing.assert_allclose(prob, torch.sigmoid(out["centre_heatmap"]).numpy(), atol=1e-4)
    np.testing.assert_allclose(params, out["param_map"].numpy(), atol=1e-3)
    # the runtime's peaks: flat indices row * w + column, -1 for an empty slot
    index = np.full((1, K), -1, np.int32)
    index[0, :5] = [2 * 16 + 3, 0, 15 * 16 + 15, 7 * 16 + 9, 5]
    sess = ort.InferenceSession(str(tmp_path / "decode.onnx"),
                                providers=["CPUExecutionProvider"])
    rotmats, betas, cam = (a[0] for a in sess.run(None, {"param_map": params, "index": index}))
    cells = np.maximum(index[0], 0)
    vectors = torch.from_numpy(params[0].reshape(PARAM_DIM, -1)[:, cells].T.copy())
    expected = InstanceHMR.decode_params(vectors)
    assert rotmats.shape == (K, 24, 3, 3)
    np.testing.assert_allclose(rotmats, expected["rotmats"].numpy(), atol=1e-5)
    np.testing.assert_allclose(betas, expected["betas"].numpy(), atol=1e-6)
    np.testing.assert_allclose(cam, expected["cam"].numpy(), atol=1e-5)


def test_import_release_checkpoint_round_trip(tmp_path):
    """A checkpoint in the release's format (DataParallel keys under 'model_state_dict', SMPL
    buffers of the result parser alongside) imports, and the graph computes with its weights;
    a checkpoint of another layout is refused with the keys named."""
    from hmr_ros.export.instancehmr_export import (CheckpointMismatchError,
                                                   import_instancehmr_checkpoint)
    import onnxruntime as ort

    torch.manual_seed(0)
    size = 64  # the weights are size-agnostic; a small input keeps the export quick
    source = InstanceHMR(InstanceHMRConfig(backbone="hrnet_w32", input_size=size)).eval()
    with torch.no_grad():
        for p in source.parameters():
            p.add_(0.01 * torch.randn_like(p))
    state = {f"module.{k}": v for k, v in source.state_dict().items()}
    state["module._result_parser.params_map_parser.smpl_model.v_template"] = torch.zeros(6890, 3)
    ckpt = tmp_path / "instancehmr_hrnet.pkl"
    torch.save({"model_state_dict": state, "optimizer_state_dict": {}}, ckpt)
    out = tmp_path / "model"
    manifest = import_instancehmr_checkpoint(ckpt, out, body=procedural_body(),
                                             input_size=size)
    assert manifest.config["backbone"] == "hrnet_w32" and manifest.config["input_size"] == size
    images = torch.randn(1, 3, size, size)
    sess = ort.InferenceSession(str(out / "maps.onnx"), providers=["CPUExecutionProvider"])
    _, params = sess.run(None, {"images": images.numpy()})
    with torch.no_grad():
        expected = source(images)["param_map"].numpy()
    np.testing.assert_allclose(params, expected, atol=1e-3)

    del state["module.params_outconv.bias"]
    state["module.params_outconv.weight"] = torch.zeros(145, 128, 1, 1)
    state["module.extra_head.weight"] = torch.zeros(3)
    bad = tmp_path / "other.pth"
    torch.save(state, bad)
    with pytest.raises(CheckpointMismatchError) as err:
        import_instancehmr_checkpoint(bad, tmp_path / "bad", body=procedural_body(),
                                      input_size=size)
    message = str(err.value)
    assert "missing (1): params_outconv.bias" in message
    assert "unexpected (1): extra_head.weight" in message
    assert "params_outconv.weight (145, 128, 1, 1) != (79, 128, 1, 1)" in message
    assert not (tmp_path / "bad").exists()
