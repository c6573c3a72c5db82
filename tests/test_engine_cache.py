"""Engine cache: key digests, store/lookup, stale and corrupt entries, the rebuild policy.

The cache treats engines as opaque bytes, so everything but the TensorRT build itself runs here
with fake engines and a counting fake builder.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import subprocess
import sys

import numpy as np
import pytest

from hmr_ros.export.manifest import TensorSpec
from hmr_ros.runtime.cuda_context import plan_buffers
from hmr_ros.runtime.engine_cache import (EngineCache, EngineKey, build_engine_main,
                                          make_key, make_profile, obtain_engine)
from hmr_ros.runtime.errors import EngineError

INPUTS = (TensorSpec("uv_features", ("batch", 35, 16, 16)), TensorSpec("pooled", ("batch", 512)),
          TensorSpec("z", ("batch", 3, 144)))
SHA = "0123456789abcdef" * 4


def key(**changes) -> EngineKey:
    base = dict(onnx_sha256=SHA, precision="fp16", max_batch=8, tensorrt_version="10.3.0",
                gpu_name="NVIDIA H200", compute_capability=(9, 0))
    base.update(changes)
    return make_key(base.pop("onnx_sha256"), INPUTS, **base)


class Builder:
    """Counts builds; each build returns distinct fake engine bytes."""

    def __init__(self):
        self.calls = 0

    def __call__(self) -> bytes:
        self.calls += 1
        return b"fake-engine-%d-" % self.calls + bytes(range(256)) * 4


# --- the key -------------------------------------------------------------------------------

#: Pinned: changing the canonical form orphans every engine cache in the field. If this fails
#: on purpose, bump KEY_VERSION and update the value.
GOLDEN = "94063e3af30c8a7da4475f1e33ff0e06a76225af7af9bedca48c0e7d30803658"


def test_digest_is_stable_across_processes_and_input_order():
    k = key()
    reordered = dataclasses.replace(k, profile=tuple(reversed(k.profile)))
    assert reordered.digest() == k.digest()
    code = ("from hmr_ros.export.manifest import TensorSpec as T\n"
            "from hmr_ros.runtime.engine_cache import make_key\n"
            "ins = (T('z', ('batch', 3, 144)), T('pooled', ('batch', 512)),"
            " T('uv_features', ('batch', 35, 16, 16)))\n"
            f"print(make_key('{SHA}', ins, precision='fp16', max_batch=8,"
            " tensorrt_version='10.3.0', gpu_name='NVIDIA H200',"
            " compute_capability='9.0').digest())\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, env={"PYTHONHASHSEED": "12345", "PATH": ""})
    assert out.stdout.strip() == k.digest()
    assert len(k.digest()) == 64 and k.digest() == k.digest()


def test_digest_is_pinned():
    assert key().digest() == GOLDEN, key().canonical_json()


@pytest.mark.parametrize("change", [
    {"onnx_sha256": "f" * 64}, {"tensorrt_version": "10.3.1"}, {"gpu_name": "NVIDIA A100"},
    {"compute_capability": (8, 0)}, {"precision": "fp32"}, {"max_batch": 4},
    {"opt_batch": 2},
])
def test_every_field_changes_the_digest(change):
    assert key(**change).digest() != key().digest()


def test_profile_shape_change_changes_the_digest():
    other = make_key(SHA, (*INPUTS[:2], TensorSpec("z", ("batch", 5, 144))), precision="fp16",
                     max_batch=8, tensorrt_version="10.3.0", gpu_name="NVIDIA H200",
                     compute_capability="9.0")
    assert other.digest() != key().digest()
    assert "profile z: max shape [8, 3, 144] → [8, 5, 144]" in other.changes_from(key())


def test_key_validation():
    with pytest.raises(EngineError, match="precision must be one of fp16, fp32"):
        key(precision="int8")
    with pytest.raises(EngineError, match="min_batch <= opt_batch <= max_batch"):
        make_profile(INPUTS, max_batch=4, opt_batch=8)
    with pytest.raises(EngineError, match="only 'batch'"):
        make_profile([TensorSpec("x", ("batch", "height"))], max_batch=2)
    assert make_profile(INPUTS[:1], 4, 2) == (("uv_features", (1, 35, 16, 16),
                                               (2, 35, 16, 16), (4, 35, 16, 16)),)


def test_change_reasons_name_old_and_new():
    old = key(tensorrt_version="10.0", gpu_name="NVIDIA A100", compute_capability="8.0",
              precision="fp32", max_batch=4)
    new = key(tensorrt_version="10.3")
    reasons = new.changes_from(old)
    assert "TensorRT 10.0 → 10.3" in reasons
    assert "GPU NVIDIA A100 → NVIDIA H200" in reasons
    assert "compute capability 8.0 → 9.0" in reasons
    assert "precision fp32 → fp16" in reasons
    assert "profile pooled: max batch 4 → 8" in reasons
    assert new.changes_from(new) == []


# --- store / lookup ------------------------------------------------------------------------

def test_store_lookup_round_trip(tmp_path):
    cache = EngineCache(tmp_path / "engines")
    k = key()
    assert cache.lookup(k) is None
    data = Builder()()
    path = cache.store(k, data, label="vishmr/stage_b")
    assert path.name == f"{k.digest()}.engine"
    assert cache.lookup(k) == path and path.read_bytes() == data
    meta = json.loads(cache.metadata_path(k).read_text())
    assert meta["label"] == "vishmr/stage_b" and meta["engine_bytes"] == len(data)
    assert EngineKey.from_dict(meta["key"]) == k
    assert cache.lookup(key(precision="fp32")) is None
    assert not list(cache.directory.glob("*.tmp"))  # atomic writes leave nothing behind


def test_timing_cache_is_per_tensorrt_version_and_gpu(tmp_path):
    cache = EngineCache(tmp_path)
    a = cache.timing_cache_path("10.3.0", "NVIDIA H200", (9, 0))
    assert a.parent == tmp_path and a.name == "timing-trt10.3.0-NVIDIA-H200-sm90.cache"
    assert a != cache.timing_cache_path("10.4.0", "NVIDIA H200", "9.0")
    assert a != cache.timing_cache_path("10.3.0", "NVIDIA A100", "8.0")


def test_find_stale_reports_each_difference(tmp_path):
    cache = EngineCache(tmp_path)
    builder = Builder()
    cache.store(key(tensorrt_version="10.0"), builder(), label="vishmr/stage_b")
    cache.store(key(gpu_name="NVIDIA A100", compute_capability="8.0"), builder())
    cache.store(key(precision="fp32"), builder())
    cache.store(key(max_batch=4), builder())
    cache.store(key(onnx_sha256="e" * 64, tensorrt_version="9.9"), builder())  # unrelated
    want = key(tensorrt_version="10.3")
    cache.store(want, builder())  # the matching entry is not stale
    reasons = sorted(r for s in cache.find_stale(want) for r in s.reasons)
    assert reasons == sorted([
        "TensorRT 10.0 → 10.3",
        "TensorRT 10.3.0 → 10.3", "GPU NVIDIA A100 → NVIDIA H200",
        "compute capability 8.0 → 9.0",
        "TensorRT 10.3.0 → 10.3", "precision fp32 → fp16",
        "TensorRT 10.3.0 → 10.3", "profile pooled: max batch 4 → 8",
        "profile uv_features: max batch 4 → 8", "profile z: max batch 4 → 8"])
    # A re-exported graph: found through the stage label, reason names the ONNX change.
    stale = cache.find_stale(key(onnx_sha256="d" * 64), label="vishmr/stage_b")
    assert len(stale) == 1 and stale[0].reasons[0].startswith("ONNX graph 0123456789ab…")


# --- policy --------------------------------------------------------------------------------

def test_builds_once_then_reuses(tmp_path, caplog):
    cache, builder, k = EngineCache(tmp_path), Builder(), key()
    caplog.set_level(logging.INFO, logger="hmr_ros.runtime")
    first = obtain_engine(cache, k, builder, label="vishmr/stage_b")
    assert first.built and builder.calls == 1
    assert "building TensorRT engine for vishmr/stage_b" in caplog.text
    assert "no engine cached" in caplog.text
    caplog.clear()
    again = obtain_engine(cache, k, builder, rebuild="never", label="vishmr/stage_b")
    assert not again.built and builder.calls == 1 and again.engine == first.engine
    assert "reusing engine" in caplog.text and str(again.path) in caplog.text
    loaded = obtain_engine(cache, k, builder, deserialize=lambda b: ("engine", len(b)))
    assert loaded.engine == ("engine", len(first.engine)) and builder.calls == 1
    forced = obtain_engine(cache, k, builder, rebuild="always")
    assert forced.built and builder.calls == 2


def test_stale_engine_is_rebuilt_with_a_reason(tmp_path, caplog):
    cache, builder = EngineCache(tmp_path), Builder()
    obtain_engine(cache, key(tensorrt_version="10.0"), builder, label="vishmr/stage_b")
    caplog.set_level(logging.INFO, logger="hmr_ros.runtime")
    got = obtain_engine(cache, key(tensorrt_version="10.3"), builder, label="vishmr/stage_b")
    assert got.built and builder.calls == 2
    warning = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert warning and "TensorRT 10.0 → 10.3" in warning[0].getMessage()
    assert cache.lookup(key(tensorrt_version="10.0")) is not None  # kept for other machines


def test_rebuild_never_refuses_naming_the_difference(tmp_path):
    cache, builder = EngineCache(tmp_path), Builder()
    obtain_engine(cache, key(gpu_name="NVIDIA A100", tensorrt_version="10.0"), builder)
    with pytest.raises(EngineError) as err:
        obtain_engine(cache, key(tensorrt_version="10.3"), builder, rebuild="never",
                      label="vishmr/stage_b")
    msg = str(err.value)
    assert "TensorRT 10.0 → 10.3" in msg and "GPU NVIDIA A100 → NVIDIA H200" in msg
    assert "rebuild='never'" in msg and "hmr-ros build-engine" in msg
    assert builder.calls == 1
    with pytest.raises(EngineError, match="no engine cached"):
        obtain_engine(EngineCache(tmp_path / "empty"), key(), builder, rebuild="never")
    with pytest.raises(EngineError, match="rebuild must be one of"):
        obtain_engine(cache, key(), builder, rebuild="sometimes")


def test_corrupt_entries_are_rebuilt_or_refused(tmp_path, caplog):
    cache, builder, k = EngineCache(tmp_path), Builder(), key()
    obtain_engine(cache, k, builder)
    cache.metadata_path(k).write_text("{not json")
    assert cache.lookup(k) is None
    status = cache.check(k)
    assert status.status == "corrupt" and "unreadable" in status.reason
    with pytest.raises(EngineError, match=r"corrupt: metadata .*\.json is unreadable"):
        obtain_engine(cache, k, builder, rebuild="never")
    caplog.set_level(logging.INFO, logger="hmr_ros.runtime")
    assert obtain_engine(cache, k, builder).built and builder.calls == 2
    assert "is corrupt" in caplog.text
    # truncated engine file
    path = cache.engine_path(k)
    path.write_bytes(path.read_bytes()[:100])
    assert "truncated" in cache.check(k).reason
    assert obtain_engine(cache, k, builder).built and builder.calls == 3
    # same size, other bytes
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    assert "sha256" in cache.check(k).reason
    # engine without metadata (interrupted store)
    cache.metadata_path(k).unlink()
    assert "no metadata" in cache.check(k).reason
    # metadata of another key under this key's name
    obtain_engine(cache, k, builder)
    other = json.loads(cache.metadata_path(k).read_text())
    other["key"] = key(precision="fp32").to_dict()
    cache.metadata_path(k).write_text(json.dumps(other))
    assert "describes another engine: precision fp32 → fp16" in cache.check(k).reason


def test_engine_that_does_not_deserialize_is_rebuilt_or_refused(tmp_path):
    cache, builder, k = EngineCache(tmp_path), Builder(), key()
    obtain_engine(cache, k, builder)
    # what TensorRT's runtime does with an engine from an incompatible build: returns None
    fussy = {"ok": None}

    def deserialize(data):
        return fussy["ok"] and data

    with pytest.raises(EngineError, match="could not deserialize"):
        obtain_engine(cache, k, builder, deserialize=deserialize, rebuild="never")
    with pytest.raises(EngineError, match="just built .* does not deserialize"):
        obtain_engine(cache, k, builder, deserialize=deserialize)
    assert cache.lookup(k) is None  # the useless engine is not kept
    fussy["ok"] = True
    got = obtain_engine(cache, k, builder, deserialize=deserialize)
    assert got.built and got.engine == cache.engine_path(k).read_bytes()

    def raising(data):
        raise RuntimeError("bad magic")

    with pytest.raises(EngineError, match="RuntimeError: bad magic"):
        obtain_engine(cache, k, builder, deserialize=raising, rebuild="never")


def test_empty_engine_is_refused(tmp_path):
    with pytest.raises(EngineError, match="empty engine"):
        EngineCache(tmp_path).store(key(), b"")


# --- buffer planning ------------------------------------------------------------------------

def test_plan_buffers_from_specs():
    plans = plan_buffers((*INPUTS, ("hyp_loglik", ("batch", 3), "float32"),
                          ("index", ("batch",), "int64")), max_batch=4)
    assert [p.name for p in plans] == ["uv_features", "pooled", "z", "hyp_loglik", "index"]
    assert plans[0].shape == (4, 35, 16, 16) and plans[0].nbytes == 4 * 35 * 16 * 16 * 4
    assert plans[4].dtype == np.int64 and plans[4].nbytes == 32
    name, shape, dtype, nbytes = plans[2]  # plain tuples too
    assert (name, shape, nbytes) == ("z", (4, 3, 144), 4 * 3 * 144 * 4)
    with pytest.raises(EngineError, match="only 'batch' may be dynamic"):
        plan_buffers([("x", ("batch", "h"))], 2)
    with pytest.raises(EngineError, match="positive integer"):
        plan_buffers(INPUTS, 0)
    with pytest.raises(EngineError, match="listed twice"):
        plan_buffers((*INPUTS, INPUTS[0]), 2)


# --- the ahead-of-time builder ----------------------------------------------------------------

def _trt_ready() -> bool:
    from hmr_ros.runtime.backends import backend_available

    return backend_available("tensorrt") is None


@pytest.mark.skipif(_trt_ready(), reason="TensorRT and a GPU are present")
def test_build_engine_main_fails_clearly_without_tensorrt(tmp_path, capsys):
    rc = build_engine_main(["--model-dir", str(tmp_path), "--precision", "fp16",
                            "--max-batch", "4", "--cache-dir", str(tmp_path / "c")])
    assert rc != 0
    err = capsys.readouterr().err
    assert "hmr-ros build-engine: error:" in err
    assert ("tensorrt is not installed: pip install tensorrt" in err
            or "no CUDA GPU" in err or "pycuda" in err)
    assert not (tmp_path / "c").exists()
