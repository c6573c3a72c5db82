"""Backends behind one interface: ONNX Runtime on real exported stage graphs against the torch
model they came from, backend selection here (no TensorRT, no GPU), buffer planning from a real
manifest, and -- on a CUDA machine with TensorRT -- engine build, reuse and parity with ORT.
"""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

from hmr_ros import kernels as K
from hmr_ros.export import Manifest, export_vishmr
from hmr_ros.models import STAGE_A_OUTPUTS, STAGE_B_OUTPUTS
from hmr_ros.runtime.backends import (BACKENDS, Backend, OrtBackend, TensorRTBackend,
                                      TorchBackend, backend_available, resolve_providers,
                                      select_backend, session_options)
from hmr_ros.runtime.cuda_context import plan_stage_buffers
from hmr_ros.runtime.errors import EngineError
from tiny_vishmr import TINY, tiny_vishmr

TRT_READY = backend_available("tensorrt") is None


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A tiny VisHMR with calibrated BatchNorm and a non-identity flow, exported."""
    net = tiny_vishmr()
    root = tmp_path_factory.mktemp("backends")
    export_vishmr(net, root / "onnx")
    return net.eval(), root / "onnx"


@pytest.fixture(scope="module")
def torch_backend(exported):
    return TorchBackend(exported[0])


@pytest.fixture(scope="module")
def ort(exported):
    backend = OrtBackend(exported[1], threads=1)
    yield backend
    backend.close()


def _chain_feeds(backend, images, z):
    """Stage A on ``backend``, the compiled warp, then stage B's feeds."""
    a = backend.run("stage_a", {"images": images})
    uv = K.iuv_warp(np.ascontiguousarray(a["features"]), np.ascontiguousarray(a["iuv"]),
                    TINY.uv_size, TINY.fg_threshold)
    return a, {"uv_features": uv, "pooled": a["pooled"], "z": z}


def test_backends_implement_the_interface(ort, torch_backend):
    for backend in (ort, torch_backend):
        assert isinstance(backend, Backend)
        assert backend.stages == ("stage_a", "stage_b")
        assert backend.input_names("stage_a") == ("images",)
        assert backend.input_names("stage_b") == ("uv_features", "pooled", "z")
        assert backend.output_names("stage_a") == STAGE_A_OUTPUTS
        assert backend.output_names("stage_b") == STAGE_B_OUTPUTS
    assert set(BACKENDS) == {"onnxruntime", "tensorrt", "torch"}
    assert ort.providers == ["CPUExecutionProvider"]


@pytest.mark.parametrize("batch", [1, 3])
def test_ort_matches_torch_on_both_stages(ort, torch_backend, batch):
    rng = np.random.default_rng(batch)
    images = rng.standard_normal((batch, 3, 64, 64)).astype(np.float32)
    z = rng.standard_normal((batch, 3, 144)).astype(np.float32)
    got_a, feeds = _chain_feeds(ort, images, z)
    ref_a = torch_backend.run("stage_a", {"images": images})
    assert list(got_a) == list(STAGE_A_OUTPUTS)
    for name in STAGE_A_OUTPUTS:
        assert isinstance(ref_a[name], np.ndarray)
        np.testing.assert_allclose(got_a[name], ref_a[name], rtol=1e-4, atol=1e-4, err_msg=name)
    got_b = ort.run("stage_b", feeds)
    ref_b = torch_backend.run("stage_b", feeds)
    assert list(got_b) == list(STAGE_B_OUTPUTS)
    for name in STAGE_B_OUTPUTS:
        assert got_b[name].shape[0] == batch
        np.testing.assert_allclose(got_b[name], ref_b[name], rtol=1e-4, atol=1e-4, err_msg=name)


def test_torch_backend_keeps_torch_tensors(torch_backend):
    out = torch_backend.run("stage_a", {"images": torch.zeros(2, 3, 64, 64)})
    assert all(isinstance(v, torch.Tensor) and not v.requires_grad for v in out.values())
    with pytest.raises(EngineError, match="needs a VisHMR model"):
        TorchBackend(torch.nn.Linear(2, 2))


def test_feeds_are_checked(ort):
    with pytest.raises(EngineError, match=r"no stage 'stage_c' \(has stage_a, stage_b\)"):
        ort.run("stage_c", {})
    with pytest.raises(EngineError, match=r"missing \['z'\]"):
        ort.run("stage_b", {"uv_features": np.zeros((1, 35, 16, 16), np.float32),
                            "pooled": np.zeros((1, 512), np.float32)})
    with pytest.raises(EngineError, match=r"unexpected \['crops'\]"):
        ort.run("stage_a", {"images": np.zeros((1, 3, 64, 64), np.float32),
                            "crops": np.zeros(1)})
    with pytest.raises(EngineError, match=r"'images' must have shape \(B, 3, 64, 64\)"):
        ort.run("stage_a", {"images": np.zeros((1, 3, 32, 32), np.float32)})
    with pytest.raises(EngineError, match="disagree on the batch size"):
        ort.run("stage_b", {"uv_features": np.zeros((2, 35, 16, 16), np.float32),
                            "pooled": np.zeros((1, 512), np.float32),
                            "z": np.zeros((2, 3, 144), np.float32)})


def test_closed_backend_refuses(exported):
    with OrtBackend(exported[1]) as backend:
        backend.run("stage_a", {"images": np.zeros((1, 3, 64, 64), np.float32)})
    with pytest.raises(EngineError, match="closed"):
        backend.run("stage_a", {"images": np.zeros((1, 3, 64, 64), np.float32)})


def test_session_options_and_providers():
    opts = session_options(threads=2)
    assert opts.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    assert opts.intra_op_num_threads == 2
    assert resolve_providers("auto")[-1] == "CPUExecutionProvider"
    assert "AzureExecutionProvider" not in resolve_providers("auto")
    import onnxruntime

    if "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
        with pytest.raises(EngineError, match="lacks \\['CUDAExecutionProvider'\\].*"
                                              "onnxruntime-gpu"):
            resolve_providers(["CUDAExecutionProvider", "CPUExecutionProvider"])


def test_buffer_plan_matches_what_the_graphs_produce(exported, ort):
    _, model_dir = exported
    manifest = Manifest.load(model_dir)
    max_batch = 4
    plan_a = {p.name: p for p in plan_stage_buffers(manifest.stages["stage_a"], max_batch)}
    plan_b = {p.name: p for p in plan_stage_buffers(manifest.stages["stage_b"], max_batch)}
    assert list(plan_a) == ["images", *STAGE_A_OUTPUTS]
    assert list(plan_b) == ["uv_features", "pooled", "z", *STAGE_B_OUTPUTS]
    images = np.zeros((max_batch, 3, 64, 64), np.float32)
    z = np.zeros((max_batch, 3, 144), np.float32)
    got_a, feeds = _chain_feeds(ort, images, z)
    got_b = ort.run("stage_b", feeds)
    for name, value in {"images": images, **got_a, **feeds, **got_b}.items():
        plan = plan_a.get(name) or plan_b[name]
        assert plan.shape == value.shape and plan.nbytes == value.nbytes, name


# --- selection -------------------------------------------------------------------------------

@pytest.mark.skipif(TRT_READY, reason="TensorRT and a GPU are present")
def test_select_backend_here(exported, caplog):
    net, model_dir = exported
    caplog.set_level(logging.INFO, logger="hmr_ros.runtime")
    auto = select_backend("auto", model_dir, precision="fp16", threads=1)  # fp16: TRT's, ignored
    assert isinstance(auto, OrtBackend) and auto.name == "onnxruntime"
    assert "backend auto: onnxruntime" in caplog.text
    with pytest.raises(EngineError, match="tensorrt is not installed: pip install tensorrt "
                                          r"\(needs an NVIDIA GPU"):
        select_backend("tensorrt", model_dir)
    with pytest.raises(EngineError, match="tensorrt is not installed"):
        TensorRTBackend(model_dir)
    assert isinstance(select_backend("ort", model_dir), OrtBackend)
    assert isinstance(select_backend("torch", model=net), TorchBackend)
    with pytest.raises(EngineError, match="pass model=VisHMR"):
        select_backend("torch", model_dir)
    with pytest.raises(EngineError, match="unknown backend 'openvino'"):
        select_backend("openvino", model_dir)
    with pytest.raises(EngineError, match=r"unknown backend option\(s\) \['thread'\]"):
        select_backend("auto", model_dir, thread=1)
    with pytest.raises(EngineError, match="needs model_dir"):
        select_backend("onnxruntime")


def test_missing_model_dir_is_an_engine_error(tmp_path):
    with pytest.raises(EngineError, match="no manifest.json"):
        OrtBackend(tmp_path)


# --- TensorRT (CUDA machines with tensorrt + pycuda) -----------------------------------------

@pytest.mark.gpu
@pytest.mark.skipif(not TRT_READY, reason="needs tensorrt, pycuda and a CUDA GPU")
@pytest.mark.parametrize("precision,tol", [("fp32", 2e-3), ("fp16", 5e-2)])
def test_tensorrt_engines_match_ort_and_are_reused(exported, ort, tmp_path, caplog, precision,
                                                   tol):
    _, model_dir = exported
    caplog.set_level(logging.INFO, logger="hmr_ros.runtime")
    cache = tmp_path / "engines"
    with TensorRTBackend(model_dir, precision=precision, max_batch=4, cache_dir=cache) as trt:
        assert isinstance(trt, Backend) and trt.stages == ("stage_a", "stage_b")
        rng = np.random.default_rng(0)
        for batch in (1, 3):
            images = rng.standard_normal((batch, 3, 64, 64)).astype(np.float32)
            z = rng.standard_normal((batch, 3, 144)).astype(np.float32)
            ref_a, feeds = _chain_feeds(ort, images, z)
            got_a = trt.run("stage_a", {"images": images})
            for name in STAGE_A_OUTPUTS:
                np.testing.assert_allclose(got_a[name], ref_a[name], rtol=tol, atol=tol,
                                           err_msg=f"{precision} {name}")
            ref_b = ort.run("stage_b", feeds)
            got_b = trt.run("stage_b", feeds)  # same feeds: compares the engines alone
            for name in STAGE_B_OUTPUTS:
                np.testing.assert_allclose(got_b[name], ref_b[name], rtol=tol, atol=tol,
                                           err_msg=f"{precision} {name}")
        with pytest.raises(EngineError, match="exceeds max_batch 4"):
            trt.run("stage_a", {"images": np.zeros((5, 3, 64, 64), np.float32)})
        empty = trt.run("stage_a", {"images": np.zeros((0, 3, 64, 64), np.float32)})
        assert empty["pooled"].shape[0] == 0
    assert "building TensorRT engine" in caplog.text
    caplog.clear()
    with TensorRTBackend(model_dir, precision=precision, max_batch=4, cache_dir=cache,
                         rebuild="never"):
        pass
    assert caplog.text.count("reusing engine") == 2
    assert "building TensorRT engine" not in caplog.text
    with pytest.raises(EngineError, match="max batch 4 → 8"):
        TensorRTBackend(model_dir, precision=precision, max_batch=8, cache_dir=cache,
                        rebuild="never")


@pytest.mark.gpu
@pytest.mark.skipif(not TRT_READY, reason="needs tensorrt, pycuda and a CUDA GPU")
def test_tensorrt_device_outputs_feed_torch_without_a_host_copy(exported, tmp_path):
    _, model_dir = exported
    images = np.random.default_rng(1).standard_normal((2, 3, 64, 64)).astype(np.float32)
    with TensorRTBackend(model_dir, precision="fp32", max_batch=2,
                         cache_dir=tmp_path / "engines") as trt:
        host = trt.run("stage_a", {"images": images})
        on_device = trt.run("stage_a", {"images": images}, outputs_on_device=True)
        stream = torch.cuda.ExternalStream(trt.stream_handle)
        with torch.cuda.stream(stream):  # same stream: ordered after the engine, no sync
            pooled = torch.as_tensor(on_device["pooled"], device="cuda").clone()
            # device input: the engine reads the torch tensor in place
            again = trt.run("stage_a", {"images": torch.from_numpy(images).cuda()})
        stream.synchronize()
        np.testing.assert_array_equal(pooled.cpu().numpy(), host["pooled"])
        np.testing.assert_array_equal(again["pooled"], host["pooled"])


@pytest.mark.gpu
@pytest.mark.skipif(not TRT_READY, reason="needs tensorrt, pycuda and a CUDA GPU")
def test_build_engine_main_builds_then_reports_up_to_date(exported, tmp_path, capsys):
    from hmr_ros.runtime.engine_cache import build_engine_main

    _, model_dir = exported
    args = ["--model-dir", str(model_dir), "--precision", "fp32", "--max-batch", "2",
            "--cache-dir", str(tmp_path / "c")]
    assert build_engine_main(args) == 0
    assert capsys.readouterr().out.count(": built ") == 2
    assert build_engine_main(args) == 0
    assert capsys.readouterr().out.count(": up to date ") == 2
