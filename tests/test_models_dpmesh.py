"""DPMesh (paper 004): shapes, rest pose at init, keypoint conversion, losses, overfitting, the
two-graph export (ORT parity, TensorRT ops, FP16 U-Net), full-size sizes on the meta device and
the authors' checkpoint layout (reference keys, import round trip)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("diffusers")

from hmr_ros.export.dpmesh_export import (ExportError, check_state,  # noqa: E402
                                          convert_dpmesh_state, export_dpmesh,
                                          import_dpmesh_checkpoint, load_dpmesh_checkpoint,
                                          merge_lora,
                                          reference_to_ours, REFERENCE_HEAD_NAMES,
                                          REFERENCE_PREFIXES)
from hmr_ros.export.manifest import Manifest  # noqa: E402
from hmr_ros.kernels import torch_ops as ops  # noqa: E402
from hmr_ros.models.camera import weak_perspective_project  # noqa: E402
from hmr_ros.models.dpmesh import (DPMESH_FEATURES, DPMESH_JOINTS, DPMesh,  # noqa: E402
                                   DPMeshConfig, DPMeshLoss, DPMeshLossWeights,
                                   KeypointConverter, perturb_keypoints, sample_volume,
                                   teacher_copy)

REFERENCE_KEYS = Path(__file__).parent / "data" / "dpmesh_reference_keys.txt"
REFERENCE_LDM_KEYS = Path(__file__).parent / "data" / "dpmesh_reference_ldm_keys.txt"
#: the DPMesh-specific entries of each pose-decoder variant (VQ: the paper; VPoser: the release)
REFERENCE_HEAD_KEYS = {
    "vq": REFERENCE_KEYS,
    "vposer": Path(__file__).parent / "data" / "dpmesh_reference_keys_vposer.txt"}
CROP = DPMeshConfig.tiny().crop_size


def _model(seed: int = 0, **overrides) -> DPMesh:
    torch.manual_seed(seed)
    return DPMesh(DPMeshConfig.tiny(**overrides))


def _inputs(batch: int = 2, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    images = torch.rand(batch, 3, CROP, CROP, generator=gen) * 2 - 1
    keypoints = torch.cat([torch.rand(batch, 17, 2, generator=gen) * 1.6 - 0.8,
                           torch.ones(batch, 17, 1)], dim=-1)
    return images, keypoints


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    """The tiny networks run fastest on one thread; with two, OpenMP's waiting threads spin
    against whatever else runs on a small shared machine and a step takes ~20x longer."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def body_lbs():
    from hmr_ros.train.param_regressor import BodyLBS
    return BodyLBS("procedural")


@pytest.fixture(scope="module", params=["vq", "vposer"])
def full_meta(request):
    with torch.device("meta"):
        return DPMesh(DPMeshConfig.full(pose_decoder=request.param))


def test_shapes_and_rest_pose_at_init():
    model = _model().eval()
    images, keypoints = _inputs()
    with torch.no_grad():
        features = model.backbone(images, keypoints)
        out = model(images, keypoints)
    side = model.config.latent_size
    channels = model.config.block_out_channels
    expected = {"features_s1": (channels[0], side), "features_s2": (channels[1], side // 2),
                "attention_s2": (30, side // 2), "features_s4": (channels[2], side // 4),
                "attention_s4": (30, side // 4), "features_s8": (channels[3], side // 8)}
    for name, feat in zip(DPMESH_FEATURES, features):
        c, s = expected[name]
        assert feat.shape == (2, c, s, s), name
    assert out["rotmats"].shape == (2, 24, 3, 3)
    assert out["betas"].shape == (2, 10) and out["cam"].shape == (2, 3)
    assert out["vq_logits"].shape == (2, model.config.vq_tokens, model.config.vq_classes)
    # the mean-parameter start: identity rotations, zero shape, SPIN's camera mean
    assert torch.allclose(out["rotmats"], torch.eye(3).expand(2, 24, 3, 3), atol=0.05)
    assert out["betas"].abs().max() < 0.05
    assert torch.allclose(out["cam"], torch.tensor([0.9, 0.0, 0.0]).expand(2, 3), atol=0.05)
    # the attention maps are softmax probabilities over the 30 prompt tokens
    for maps in (features[2], features[4]):
        assert torch.allclose(maps.sum(1), torch.ones_like(maps[:, 0]), atol=1e-5)


def test_vposer_variant_shapes_rest_pose_and_gradients():
    model = _model(pose_decoder="vposer").eval()
    images, keypoints = _inputs()
    with torch.no_grad():
        out = model(images, keypoints)
    assert out["rotmats"].shape == (2, 24, 3, 3) and out["pose_latent"].shape == (2, 32)
    assert "vq_logits" not in out and model.head.num_param_tokens == 3
    assert torch.allclose(out["rotmats"], torch.eye(3).expand(2, 24, 3, 3), atol=0.05)
    assert torch.equal(out["rotmats"][:, 22:], torch.eye(3).expand(2, 2, 3, 3))  # hands
    model.train()
    model(images, keypoints)["rotmats"].sum().backward()
    assert model.head.vposer.bodyprior_dec_fc1.weight.grad is not None


def test_keypoint_conversion_by_hand():
    crop, latent = 256, 32
    conv = KeypointConverter(crop, latent, threshold=0.1)
    kp = torch.zeros(1, 17, 3)
    kp[0, 5] = torch.tensor([-0.5, 0.25, 0.9])  # L_Shoulder
    kp[0, 6] = torch.tensor([0.5, 0.25, 0.6])  # R_Shoulder
    kp[0, 11] = torch.tensor([-0.25, 0.5, 0.8])  # L_Hip
    kp[0, 12] = torch.tensor([0.25, 0.5, 0.05])  # R_Hip, below the threshold
    kp[0, 0] = torch.tensor([-1.0, -1.0, 1.0])  # Nose on the crop's top-left edge
    xy, mask = conv(kp)
    idx = DPMESH_JOINTS.index

    def latent_px(x):  # crop pixel (x + 1) 256 / 2 - 0.5, scaled by 32 / 256
        return ((x + 1) * 128 - 0.5) / 8

    assert torch.allclose(xy[0, idx("L_Shoulder")], torch.tensor([latent_px(-0.5),
                                                                  latent_px(0.25)]))
    assert mask[0, idx("L_Shoulder")] == 1 and mask[0, idx("R_Shoulder")] == 1
    # Neck = shoulder midpoint, confidence the lower of the two
    assert torch.allclose(xy[0, idx("Neck")], torch.tensor([latent_px(0.0), latent_px(0.25)]))
    assert mask[0, idx("Neck")] == 1
    # Pelvis needs both hips: the right one is not confident
    assert torch.allclose(xy[0, idx("Pelvis")], torch.tensor([latent_px(0.0), latent_px(0.5)]))
    assert mask[0, idx("Pelvis")] == 0 and mask[0, idx("R_Hip")] == 0
    # the outer edge maps half a crop pixel before the first latent pixel centre: outside
    assert mask[0, idx("Nose")] == 0
    # joints COCO lacks: zero coordinates, masked, as in the authors' data
    for name in ("Torso", "Spine", "Chest", "L_Toe", "Head", "L_Hand", "Head_top"):
        assert mask[0, idx(name)] == 0 and xy[0, idx(name)].abs().sum() == 0


def test_heatmap_and_prompt_follow_keypoints():
    model = _model().eval()
    _, keypoints = _inputs(1)
    heat, prompt = model.backbone.conditions(keypoints)
    assert heat.shape == (1, 30, model.config.latent_size, model.config.latent_size)
    assert prompt.shape == (1, 30, model.config.cross_attention_dim)
    moved = keypoints.clone()
    moved[0, 9, :2] += 0.3  # L_Wrist
    heat2, prompt2 = model.backbone.conditions(moved)
    changed = (heat2 - heat).abs().flatten(2).amax(-1)[0] > 1e-6
    assert changed.nonzero().flatten().tolist() == [DPMESH_JOINTS.index("L_Wrist")]
    assert not torch.allclose(prompt, prompt2)


def test_volume_sampling_equals_trilinear_grid_sample():
    gen = torch.Generator().manual_seed(0)
    volume = torch.randn(2, 5, 4, 4, 4, generator=gen)
    points = torch.rand(2, 7, 3, generator=gen) * 2.2 - 1.1  # some just outside
    ours = sample_volume(volume, points)
    ref = torch.nn.functional.grid_sample(volume, points[:, None, None], mode="bilinear",
                                          padding_mode="zeros", align_corners=True)
    assert torch.allclose(ours, ref.reshape(2, 5, 7), atol=1e-5)


def test_perturbation_and_training_noise_only_in_training():
    _, keypoints = _inputs()
    noisy = perturb_keypoints(keypoints, 0.05, 0.5, torch.Generator().manual_seed(0))
    dropped = noisy[..., 2] == 0
    assert 0 < dropped.float().mean() < 1
    assert (noisy[..., :2] - keypoints[..., :2]).abs().max() > 0
    model = _model().eval()
    images, _ = _inputs()
    with torch.no_grad():
        a, b = model(images, keypoints)["rotmats"], model(images, keypoints)["rotmats"]
    assert torch.equal(a, b)


def test_losses_have_every_term(body_lbs):
    model = _model().eval()
    images, keypoints = _inputs()
    targets = _targets(body_lbs)
    with torch.no_grad():
        out = model(images, keypoints)
        terms = DPMeshLoss(body_lbs)(out, targets, teacher_features=torch.randn_like(out["fused"]))
    assert set(terms) == {"keypoints2d", "joints3d", "smpl", "nkr", "total"}
    w = DPMeshLossWeights()
    total = sum(getattr(w, k) * terms[k] for k in ("keypoints2d", "joints3d", "smpl", "nkr"))
    assert torch.isclose(terms["total"], total)
    only_2d = DPMeshLoss(body_lbs)(out, {"keypoints2d": targets["keypoints2d"]})
    assert set(only_2d) == {"keypoints2d", "total"}


def _targets(body_lbs, batch: int = 2):
    gen = torch.Generator().manual_seed(3)
    rot = ops.axis_angle_to_matrix(torch.randn(batch, 24, 3, generator=gen) * 0.2)
    betas = torch.randn(batch, 10, generator=gen) * 0.5
    cam = torch.tensor([[0.8, 0.05, -0.1], [1.0, -0.1, 0.1]])[:batch]
    with torch.no_grad():
        _, joints = body_lbs(betas, rot)
    return {"keypoints2d": weak_perspective_project(joints, cam), "joints3d": joints,
            "rel_rotmats": rot, "betas": betas}


def test_overfits_a_fixed_tiny_batch_every_term_falls(body_lbs):
    """Student on fixed noisy keypoints, teacher (another network, frozen) on the clean ones,
    as NKR trains; NKR weighted up so its pull is visible within a few steps."""
    model = _model(0, keypoint_jitter=0.0, keypoint_drop=0.0)
    teacher = teacher_copy(_model(1))
    images, clean = _inputs()
    noisy = perturb_keypoints(clean, 0.05, 0.1, torch.Generator().manual_seed(1))
    targets = _targets(body_lbs)
    loss = DPMeshLoss(body_lbs, DPMeshLossWeights(nkr=2.0))
    with torch.no_grad():
        teacher_features = teacher(images, clean)["fused"]
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    model.train()
    history = []
    for _ in range(30):
        terms = loss(model(images, noisy), targets, teacher_features=teacher_features)
        opt.zero_grad()
        terms["total"].backward()
        opt.step()
        history.append({k: float(v.detach()) for k, v in terms.items()})
    for key in ("keypoints2d", "joints3d", "smpl", "nkr", "total"):
        assert history[-1][key] < 0.7 * history[0][key], (key, history[0][key], history[-1][key])


def test_frozen_vae_gets_no_gradient():
    model = _model().train()
    images, keypoints = _inputs()
    model(images, keypoints)["rotmats"].sum().backward()
    assert all(p.grad is None for p in model.backbone.vae_encoder.parameters())
    assert model.backbone.keypoint_prompt.weight.grad is not None
    assert model.backbone.controlnet.conv_in.weight.grad is not None


@pytest.mark.parametrize("fp16", [False, True])
def test_export_two_graphs_parity_and_tensorrt_ops(tmp_path, fp16):
    import onnx
    import onnxruntime as ort
    from hmr_ros.body import load_body_model

    model = _model().eval()
    manifest = export_dpmesh(model, tmp_path, body=load_body_model("procedural"),
                             fp16_unet=fp16)
    assert manifest.model == "dpmesh" and set(manifest.stages) == {"unet", "regressor"}
    assert manifest.heads["chain"] == ["unet", "regressor"]
    assert manifest.preprocessing["mean"] == [0.5] * 3
    assert manifest.preprocessing["crop_size"] == CROP
    assert [t.name for t in manifest.stages["unet"].outputs] == list(DPMESH_FEATURES)
    assert [t.name for t in manifest.stages["regressor"].inputs] == list(DPMESH_FEATURES)
    Manifest.load(tmp_path)  # hashes verify
    graph = onnx.load(str(tmp_path / "unet.onnx")).graph
    weight_types = {t.data_type for t in graph.initializer if len(t.dims) > 1}
    assert weight_types == ({onnx.TensorProto.FLOAT16} if fp16 else {onnx.TensorProto.FLOAT})
    # the chained graphs on a new batch size reproduce torch end to end
    images, keypoints = _inputs(3, seed=5)
    unet = ort.InferenceSession(str(tmp_path / "unet.onnx"), providers=["CPUExecutionProvider"])
    reg = ort.InferenceSession(str(tmp_path / "regressor.onnx"),
                               providers=["CPUExecutionProvider"])
    feats = unet.run(None, {"images": images.numpy(), "keypoints": keypoints.numpy()})
    rotmats, betas, cam = reg.run(None, dict(zip(DPMESH_FEATURES, feats)))
    with torch.no_grad():
        out = model(images, keypoints)
    atol = 5e-2 if fp16 else 1e-3
    np.testing.assert_allclose(rotmats, out["rotmats"].numpy(), atol=atol)
    np.testing.assert_allclose(cam, out["cam"].numpy(), atol=atol)
    np.testing.assert_allclose(betas, out["betas"].numpy(), atol=atol)


def test_full_size_parameter_counts_on_meta(full_meta):
    def count(module):
        return sum(p.numel() for p in module.parameters())

    bb = full_meta.backbone
    assert abs(count(bb.unet) - 859.52e6) < 0.01e6  # SD 1.5's U-Net
    # SD 1.5's ControlNet is 361.3 M; ours has no conditioning embedding (-1.1 M) and a
    # conv_in over latent + 30 heatmaps (+0.1 M)
    assert abs(count(bb.controlnet) - 360.28e6) < 0.01e6
    assert abs(count(bb.vae_encoder) + count(bb.vae_quant_conv) - 34.16e6) < 0.01e6
    assert bb.controlnet.conv_in.weight.shape == (320, 34, 3, 3)
    assert bb.keypoint_prompt.weight.shape == (768, 2)


def _reference_entries(path: Path):
    for line in path.read_text().splitlines():
        if line and not line.startswith("#"):
            name, shape = line.split()
            yield name, () if shape == "scalar" else tuple(int(s) for s in shape.split("x"))


def test_reference_keys_and_shapes_match_full_size(full_meta):
    ours = {k: tuple(v.shape) for k, v in full_meta.state_dict().items()}
    mapped = set()
    for name, shape in _reference_entries(REFERENCE_HEAD_KEYS[full_meta.config.pose_decoder]):
        target = reference_to_ours(name)
        if target is None:
            continue
        assert target in ours, f"{name} -> {target} missing"
        assert ours[target] == shape, f"{name}: reference {shape}, ours {ours[target]}"
        mapped.add(target)
    # every DPMesh-specific entry of ours comes from the reference
    specific = {k for k in ours if k.startswith(("head.", "backbone.keypoint_prompt"))}
    assert specific == mapped


def test_the_authors_full_checkpoint_layout_converts_onto_ours(full_meta):
    """Every entry of the authors' checkpoint -- DPMesh-specific names and the LDM-layout
    U-Net (with LoRA), ControlNet and VAE encoder -- as meta tensors: the conversion (LoRA
    folding, diffusers' single-file converters, renames) gives exactly our full-size keys and
    shapes."""
    head_keys = REFERENCE_HEAD_KEYS[full_meta.config.pose_decoder]
    state = {name: torch.empty(shape, device="meta")
             for path in (head_keys, REFERENCE_LDM_KEYS)
             for name, shape in _reference_entries(path)}
    # 16 transformer blocks x 9 linears (q, k, v, out of both attentions, GEGLU proj)
    assert sum("lora_up" in k for k in state) == 144
    # the checkpoint's own (LoRA-tuned) U-Net wins over a separately given SD 1.5 file
    separate = {"unet": {"conv_in.weight": torch.empty(1, device="meta")}}
    converted = convert_dpmesh_state(full_meta, state, separate)
    check_state(full_meta, converted)
    other = "vq" if full_meta.config.pose_decoder == "vposer" else "vposer"
    with pytest.raises(ExportError, match="pose decoder"):
        convert_dpmesh_state(full_meta, {name: torch.empty(shape, device="meta") for name, shape
                                         in _reference_entries(REFERENCE_HEAD_KEYS[other])})


def _reference_name(ours: str) -> str:
    """Inverse of `reference_to_ours` (to write a checkpoint in the authors' layout)."""
    for ref, mine in REFERENCE_PREFIXES:
        if ours.startswith(mine):
            return ref + ours[len(mine):]
    name = ours[len("head."):]
    assert name.startswith(REFERENCE_HEAD_NAMES), ours
    return name


def test_import_round_trip_in_the_reference_layout(tmp_path):
    from safetensors.torch import save_file

    source = _model(0).eval()
    state = source.state_dict()
    network = {"module." + _reference_name(k): v for k, v in state.items()
               if k.startswith("head.") or k.startswith("backbone.keypoint_prompt.")}
    # entries the import must skip: VQ-VAE encoder / EMA, the stored sinusoid table, CLIP
    network["module.vqvae.start_embed.weight"] = torch.zeros(4, 9)
    network["module.vqvae.ema_w"] = torch.zeros(4, 4)
    network["module.pos_embed_1d.pos_table"] = torch.zeros(8, 4)
    network["module.backbone.sd_model.cond_stage_model.transformer.x"] = torch.zeros(1)
    ckpt = tmp_path / "dpmesh_best_ckpt.pth.tar"
    torch.save({"network": network, "epoch": 3}, ckpt)

    def part(prefix):
        return {k[len(prefix):]: v.contiguous() for k, v in state.items() if k.startswith(prefix)}

    save_file(part("backbone.unet."), str(tmp_path / "unet.safetensors"))
    (tmp_path / "controlnet").mkdir()
    save_file(part("backbone.controlnet."),
              str(tmp_path / "controlnet" / "diffusion_pytorch_model.safetensors"))
    vae = {"encoder." + k: v for k, v in part("backbone.vae_encoder.").items()}
    vae.update({"quant_conv." + k: v for k, v in part("backbone.vae_quant_conv.").items()})
    save_file(vae, str(tmp_path / "vae.safetensors"))

    target = _model(1).eval()
    load_dpmesh_checkpoint(target, dpmesh_ckpt=ckpt, sd_unet=tmp_path / "unet.safetensors",
                           controlnet=tmp_path / "controlnet", vae=tmp_path / "vae.safetensors")
    images, keypoints = _inputs()
    with torch.no_grad():
        assert torch.equal(source(images, keypoints)["rotmats"],
                           target(images, keypoints)["rotmats"])
    # the command's path: checkpoint -> exported directory whose graphs reproduce the source
    import onnxruntime as ort
    from hmr_ros.body import load_body_model

    out = tmp_path / "exported"
    manifest = import_dpmesh_checkpoint(
        dpmesh_ckpt=ckpt, out_dir=out, body=load_body_model("procedural"),
        sd_unet=tmp_path / "unet.safetensors", controlnet=tmp_path / "controlnet",
        vae=tmp_path / "vae.safetensors", config=source.config, fp16_unet=False)
    assert manifest.config["pose_decoder"] == "vq"
    unet = ort.InferenceSession(str(out / "unet.onnx"), providers=["CPUExecutionProvider"])
    reg = ort.InferenceSession(str(out / "regressor.onnx"), providers=["CPUExecutionProvider"])
    feats = unet.run(None, {"images": images.numpy(), "keypoints": keypoints.numpy()})
    cam = reg.run(["cam"], dict(zip(DPMESH_FEATURES, feats)))[0]
    with torch.no_grad():
        np.testing.assert_allclose(cam, source(images, keypoints)["cam"].numpy(), atol=1e-4)

    # a wrong shape and an unknown layout are refused by name
    network["module.cascade_cam_out.0.bias"] = torch.zeros(4)
    torch.save({"network": network}, ckpt)
    with pytest.raises(ExportError, match="cascade_cam_out.0.bias"):
        load_dpmesh_checkpoint(_model(1), dpmesh_ckpt=ckpt, sd_unet=tmp_path / "unet.safetensors",
                               controlnet=tmp_path / "controlnet", vae=tmp_path / "vae.safetensors")
    network["module.unknown_layer.weight"] = torch.zeros(1)
    torch.save({"network": network}, ckpt)
    with pytest.raises(ExportError, match="outside the DPMesh layout: unknown_layer.weight"):
        load_dpmesh_checkpoint(_model(1), dpmesh_ckpt=ckpt)
    del network["module.unknown_layer.weight"]
    torch.save({"network": network}, ckpt)
    with pytest.raises(ExportError, match="no unet weights"):
        load_dpmesh_checkpoint(_model(1), dpmesh_ckpt=ckpt)


def test_lora_layers_are_folded():
    base, up, down = torch.randn(6, 5), torch.randn(6, 2), torch.randn(2, 5)
    merged = merge_lora({"attn.to_q.linear.weight": base, "attn.to_q.lora_up.weight": up,
                         "attn.to_q.lora_down.weight": down, "attn.to_out.0.bias": torch.ones(6),
                         "ff.linear.weight": base})  # a plain layer named 'linear' stays
    assert set(merged) == {"attn.to_q.weight", "attn.to_out.0.bias", "ff.linear.weight"}
    assert torch.allclose(merged["attn.to_q.weight"], base + up @ down)
    assert torch.equal(merged["ff.linear.weight"], base)


def test_config_sizes():
    full = DPMeshConfig.full()
    assert full.latent_size == 32 and full.fused_size == 8  # paper: 256 crop, 8 x 8 fused map
    assert DPMeshConfig.from_size("tiny").size == "tiny"
    with pytest.raises(ValueError):
        DPMeshConfig.tiny(crop_size=40)
    with pytest.raises(ValueError):
        DPMeshConfig.from_size("huge")
