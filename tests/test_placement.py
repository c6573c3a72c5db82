"""Where the runner keeps data between stages: the host path here, the device-resident path
(stage outputs -> CUDA kernels -> next stage on one stream, one download) on a GPU."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hmr_ros.body import procedural_body
from hmr_ros.models.checkpoint import load_checkpoint
from hmr_ros.runtime import EngineError, VisHMRRunner
from hmr_ros.runtime.merge import merge
from hmr_ros.runtime.pipeline import FramePipeline, PipelineParams
from hmr_ros.runtime.boxes import Box
from hmr_ros.runtime.placement import (CudaPlacement, HostPlacement, array_ops,
                                       choose_placement)
from tiny_vishmr import export_tiny

OUTPUT_KEYS = ("abs_vis", "omega", "hyp_rel", "hyp_loglik", "betas", "cam", "rel_rotmats",
               "abs_rotmats", "best", "vertices", "joints", "iuv", "uv_visibility")


@pytest.fixture(scope="module")
def body():
    return procedural_body()


@pytest.fixture(scope="module")
def exported(tmp_path_factory, body):
    return export_tiny(tmp_path_factory.mktemp("placement"), body)


def _crops(runner, batch=3, seed=0):
    c = runner.crop_size
    return np.random.default_rng(seed).normal(size=(batch, 3, c, c)).astype(np.float32)


def test_cpu_backends_stay_on_the_host_and_refuse_device_residency(exported, body):
    runner = VisHMRRunner(exported / "onnx", body, backend="onnxruntime")
    assert isinstance(runner.placement, HostPlacement) and not runner.device_resident
    out = runner(_crops(runner))
    assert set(out["timing"]) == {"stage_a", "iuv_warp", "stage_b", "merge_lbs"}
    assert all(isinstance(out[k], np.ndarray) for k in OUTPUT_KEYS)
    with pytest.raises(EngineError, match="cannot keep stage outputs on the GPU"):
        VisHMRRunner(exported / "onnx", body, backend="onnxruntime", device_resident=True)
    with pytest.raises(EngineError, match="device_resident must be"):
        choose_placement(runner.backend, "yes")
    if not torch.cuda.is_available():
        with pytest.raises(EngineError, match="no CUDA"):
            CudaPlacement()


def test_torch_backend_on_the_cpu_runs_the_host_path_like_onnxruntime(exported, body):
    model = load_checkpoint(exported / "tiny.pt")
    on_torch = VisHMRRunner(exported / "onnx", body, backend="torch", model=model)
    on_ort = VisHMRRunner(exported / "onnx", body, backend="onnxruntime")
    assert not on_torch.device_resident
    crops = _crops(on_ort)
    a, b = on_torch(crops), on_ort(crops)
    for key in ("vertices", "joints", "omega", "betas"):
        np.testing.assert_allclose(a[key], b[key], atol=1e-4)
    assert np.array_equal(a["best"], b["best"])


def test_merge_array_ops_match_numpy_and_torch():
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    for xp, arr in ((array_ops(x), x), (array_ops(torch.from_numpy(x)), torch.from_numpy(x))):
        assert list(np.asarray(xp.arange(2, arr))) == [0, 1]
        assert list(np.asarray(xp.full(2, -1, arr))) == [-1, -1]
        assert np.asarray(xp.int64(arr[:, 0])).dtype == np.int64
    with pytest.raises(EngineError, match="NumPy arrays or torch tensors"):
        array_ops([1, 2])


# --- on a GPU: the device-resident path ------------------------------------------------------

@pytest.fixture
def exact_fp32():
    """GPU convolutions and matmuls in full fp32 (TF32 off), so the GPU matches the CPU."""
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    yield
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


def _assert_close_where_same_hypothesis(a, b, mode):
    """GPU vs CPU: the chosen hypothesis is discrete (a near-tie may flip), so compare the
    meshes of the rows where both chose the same one, and require most rows to agree."""
    same = a["best"] == b["best"]
    assert same.mean() >= 0.75, (mode, a["best"], b["best"])
    for key in OUTPUT_KEYS:
        assert isinstance(a[key], np.ndarray), key
        x, y = (a[key][same], b[key][same]) if key in ("rel_rotmats", "abs_rotmats", "vertices",
                                                        "joints") else (a[key], b[key])
        np.testing.assert_allclose(x, y, rtol=1e-3, atol=2e-3, err_msg=f"{mode} {key}")


def _cuda_runner(exported, body, **kw):
    model = load_checkpoint(exported / "tiny.pt")
    return VisHMRRunner(exported / "onnx", body, backend="torch", model=model, device="cuda",
                        **kw)


class _DeviceFeedsOnly:
    """The real backend, with a check that every stage is fed device arrays (no host trip)."""

    def __init__(self, backend):
        self.inner, self.fed = backend, []

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def run(self, stage, feeds):
        for name, value in feeds.items():
            assert isinstance(value, torch.Tensor) and value.is_cuda, (stage, name, type(value))
        self.fed.append(stage)
        return self.inner.run(stage, feeds)


@pytest.mark.gpu
@pytest.mark.parametrize("side_stream", [False, True])
def test_device_resident_runner_matches_the_host_path(exported, body, side_stream, exact_fp32):
    host = VisHMRRunner(exported / "onnx", body, backend="onnxruntime")
    dev = _cuda_runner(exported, body)
    assert dev.device_resident
    if side_stream:  # an external stream, as the TensorRT backend hands over
        torch.cuda.synchronize()  # the part map was uploaded on the previous stream
        dev.placement = CudaPlacement(0, torch.cuda.Stream().cuda_stream)
    dev.backend = _DeviceFeedsOnly(dev.backend)
    crops = _crops(host, batch=4, seed=3)
    for mode in ("ks_matched", "visible", "global", "ks_highest"):
        a, b = dev(crops, mode=mode), host(crops, mode=mode)
        _assert_close_where_same_hypothesis(a, b, mode)
    assert dev.backend.fed[:2] == ["stage_a", "stage_b"]
    assert set(a["timing"]) >= {"upload", "stage_a", "iuv_warp", "stage_b", "merge_lbs",
                                "download"}
    assert all(t >= 0 for t in a["timing"].values())


@pytest.mark.gpu
def test_device_resident_pipeline_crops_on_the_gpu(exported, body, exact_fp32):
    host = FramePipeline(VisHMRRunner(exported / "onnx", body, backend="onnxruntime"),
                         PipelineParams(track=False))
    dev = FramePipeline(_cuda_runner(exported, body), PipelineParams(track=False))
    image = np.random.default_rng(0).integers(0, 256, (240, 320, 3), dtype=np.uint8)
    boxes = [Box(40, 30, 140, 220, 0.9), Box(150, 20, 300, 230, 0.8)]
    a, b = dev.process(image, boxes=boxes), host.process(image, boxes=boxes)
    assert a.skipped is None and len(a.persons) == len(b.persons) == 2
    for pa, pb in zip(a.persons, b.persons):
        if pa.hypothesis != pb.hypothesis:  # a near-tie flipped (see above)
            continue
        np.testing.assert_allclose(pa.vertices, pb.vertices, rtol=1e-3, atol=5e-3)
        np.testing.assert_allclose(pa.visibility, pb.visibility, atol=2e-3)


@pytest.mark.gpu
def test_merge_runs_on_cuda_tensors(exported, body, exact_fp32):
    runner = VisHMRRunner(exported / "onnx", body, backend="onnxruntime")
    crops = _crops(runner)
    stage_a = runner.backend.run("stage_a", {"images": crops})
    from hmr_ros import kernels as K

    uv = K.iuv_warp(stage_a["features"], stage_a["iuv"], runner.atlas_size, runner.fg_threshold)
    stage_b = runner.backend.run("stage_b", {"uv_features": uv, "pooled": stage_a["pooled"],
                                             "z": runner.default_z(len(crops))})
    on_host = merge(stage_b, runner.lbs_model)
    on_dev = merge({k: torch.as_tensor(v, device="cuda") for k, v in stage_b.items()},
                   runner.lbs_model)
    assert on_dev["vertices"].is_cuda
    # same stage outputs in, so the same hypothesis and mesh out (up to float rounding)
    for key in ("rel_rotmats", "vertices", "joints", "best"):
        np.testing.assert_allclose(on_dev[key].cpu().numpy(), on_host[key], rtol=1e-4,
                                   atol=1e-4)
