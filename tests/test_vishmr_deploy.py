"""VisHMR deployment: checkpoint -> `hmr-ros export` -> ONNX Runtime stages + kernels.

The exported graphs must match the torch stages (dynamic batch), pass the TensorRT op check,
and, run with the compiled kernels between and after them, reproduce the torch model end to end
(paper split: warp, matching, slerp and LBS outside the graphs).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hmr_ros import cli
from hmr_ros.body import procedural_body
from hmr_ros.export import Manifest, check_tensorrt_compat
from hmr_ros.models import MERGE_MODES, STAGE_A_OUTPUTS, STAGE_B_OUTPUTS
from hmr_ros.models.checkpoint import CheckpointError, load_checkpoint
from hmr_ros.runtime import EngineError, OrtVisHMR
from tiny_vishmr import TINY, export_tiny



@pytest.fixture(scope="module")
def body():
    return procedural_body()


@pytest.fixture(scope="module")
def exported(tmp_path_factory, body):
    """A tiny VisHMR with non-trivial weights, saved, exported through the CLI."""
    root = export_tiny(tmp_path_factory.mktemp("vishmr"), body)
    model = load_checkpoint(root / "tiny.pt").freeze_for_export()
    return model, root


def test_checkpoint_round_trip_keeps_the_weights(exported):
    model, root = exported
    again = load_checkpoint(root / "tiny.pt")
    for (name, a), (_, b) in zip(model.state_dict().items(), again.state_dict().items()):
        assert torch.equal(a, b), name
    assert again.config == TINY


def test_bad_checkpoints_are_clear_errors(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "nope.pt")
    torch.save({"weights": 1}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="not an hmr_ros VisHMR checkpoint"):
        load_checkpoint(tmp_path / "other.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="not a readable torch checkpoint"):
        load_checkpoint(tmp_path / "junk.pt")
    assert cli.main(["export", "--checkpoint", str(tmp_path / "junk.pt"), "--out",
                     str(tmp_path / "o")]) == 1


def test_manifest_describes_the_graphs(exported):
    _, root = exported
    m = Manifest.load(root / "onnx")
    assert m.model == "vishmr" and m.opset == 17
    assert [t.name for t in m.stages["stage_a"].outputs] == list(STAGE_A_OUTPUTS)
    assert [t.name for t in m.stages["stage_b"].outputs] == list(STAGE_B_OUTPUTS)
    assert m.stages["stage_a"].inputs[0].shape == ("batch", 3, 64, 64)
    assert m.heads["num_hypotheses"] == 3 and m.heads["atlas_size"] == 16
    assert m.body["num_vertices"] == procedural_body().num_vertices
    assert m.preprocessing["crop_size"] == 64


def test_stage_graphs_pass_the_tensorrt_op_check(exported):
    _, root = exported
    for stage in ("stage_a", "stage_b"):
        assert check_tensorrt_compat(root / "onnx" / f"{stage}.onnx") == []


def test_stages_match_torch_at_other_batch_sizes(exported, body):
    model, root = exported
    runner = OrtVisHMR(root / "onnx", body)
    gen = torch.Generator().manual_seed(5)
    for batch in (1, 3):  # traced at 2: the batch axis is really dynamic
        images = torch.randn(batch, 3, 64, 64, generator=gen)
        with torch.no_grad():
            ref_a = model.stage_a(images)
        got_a = runner.sessions["stage_a"].run(None, {"images": images.numpy()})
        for name, got, ref in zip(STAGE_A_OUTPUTS, got_a, ref_a):
            np.testing.assert_allclose(got, ref.numpy(), rtol=1e-4, atol=1e-4, err_msg=name)
        feeds = {"uv_features": torch.randn(batch, 35, 16, 16, generator=gen),
                 "pooled": torch.rand(batch, 512, generator=gen),
                 "z": torch.randn(batch, 3, 144, generator=gen)}
        with torch.no_grad():
            ref_b = model.stage_b(**feeds)
        got_b = runner.sessions["stage_b"].run(None, {k: v.numpy() for k, v in feeds.items()})
        for name, got in zip(STAGE_B_OUTPUTS, got_b):
            np.testing.assert_allclose(got, ref_b[name].numpy(), rtol=1e-4, atol=1e-4,
                                       err_msg=name)


@pytest.mark.parametrize("mode", MERGE_MODES)
def test_ort_stages_plus_kernels_match_torch_end_to_end(exported, body, mode):
    model, root = exported
    runner = OrtVisHMR(root / "onnx", body)
    gen = torch.Generator().manual_seed(11)
    images = torch.randn(4, 3, 64, 64, generator=gen)
    z = model.default_z(4, generator=gen)
    with torch.no_grad():
        ref = model(images, z=z, mode=mode)
    got = runner(images.numpy(), z.numpy(), mode=mode)
    np.testing.assert_array_equal(got["best"], ref["best"].numpy())
    np.testing.assert_allclose(got["vertices"], ref["vertices"].numpy(), atol=1e-3)
    np.testing.assert_allclose(got["joints"], ref["joints"].numpy(), atol=1e-3)
    np.testing.assert_allclose(got["rel_rotmats"], ref["rel_rotmats"].numpy(), atol=1e-4)
    assert set(got["timing"]) == {"stage_a", "iuv_warp", "stage_b", "merge_lbs"}


def test_kernel_merge_matches_torch_merge_where_matching_matters(exported, body):
    """Stage B outputs built so that matching (eq. 4) and highest likelihood disagree."""
    from hmr_ros.kernels import torch_ops
    from hmr_ros.runtime import merge

    model, _ = exported
    gen = torch.Generator().manual_seed(2)
    B, K = 5, 3
    hyp_rel = torch_ops.axis_angle_to_matrix(0.4 * torch.randn(B, K, 24, 3, generator=gen))
    truth = torch.tensor([2, 1, 2, 0, 1])
    abs_vis = torch_ops.relative_to_absolute(hyp_rel[torch.arange(B), truth], model.parents)
    stage_b = {"abs_vis": abs_vis, "omega": torch.rand(B, 24, generator=gen),
               "hyp_rel": hyp_rel, "hyp_loglik": torch.tensor([[5.0, 1.0, 0.0]]).repeat(B, 1),
               "betas": torch.randn(B, 10, generator=gen), "cam": torch.zeros(B, 3)}
    from hmr_ros import kernels

    lbs_model = kernels.LbsModel.from_body(body)
    numpy_b = {k: np.ascontiguousarray(v.numpy()) for k, v in stage_b.items()}
    for mode in MERGE_MODES:
        with torch.no_grad():
            ref = model.merge(stage_b, mode)
        got = merge(numpy_b, lbs_model, mode)
        np.testing.assert_array_equal(got["best"], ref["best"].numpy(), err_msg=mode)
        np.testing.assert_allclose(got["vertices"], ref["vertices"].numpy(), atol=1e-4,
                                   err_msg=mode)
    assert merge(numpy_b, lbs_model, "ks_matched")["best"].tolist() == truth.tolist()
    assert merge(numpy_b, lbs_model, "ks_highest")["best"].tolist() == [0] * B


def test_runner_refuses_mismatched_inputs_and_files(exported, body, tmp_path):
    _, root = exported
    runner = OrtVisHMR(root / "onnx", body)
    with pytest.raises(EngineError, match=r"crops must have shape \(B, 3, 64, 64\)"):
        runner(np.zeros((1, 3, 32, 32), np.float32))
    with pytest.raises(EngineError, match=r"z must have shape \(1, 3, 144\)"):
        runner(np.zeros((1, 3, 64, 64), np.float32), np.zeros((1, 2, 144), np.float32))
    with pytest.raises(EngineError, match="unknown merge mode"):
        runner(np.zeros((1, 3, 64, 64), np.float32), mode="best")
    other = procedural_body(segments=12)
    with pytest.raises(EngineError, match="exported for a body with"):
        OrtVisHMR(root / "onnx", other)
    import shutil

    copy = tmp_path / "onnx"
    shutil.copytree(root / "onnx", copy)
    (copy / "stage_b.onnx").write_bytes((copy / "stage_a.onnx").read_bytes())
    with pytest.raises(EngineError, match="does not match the manifest"):
        OrtVisHMR(copy, body)
