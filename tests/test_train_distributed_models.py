"""torchrun for the OCHMR, InstanceHMR and DPMesh trainers, for real: two gloo processes on the
CPU run ``python -m torch.distributed.run --nproc_per_node=2 --standalone -m hmr_ros.train``
on the tiny configs of their single-process tests; rank 0 alone logs, prints and writes one
loadable checkpoint at step 2; and (``ddp_ranks_agree.py``) the ranks draw different samples
yet end with the same parameters."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import yaml

from hmr_ros.train.scalars import read_scalars

pytestmark = pytest.mark.skipif(
    not (dist.is_available() and dist.is_gloo_available()),
    reason="needs torch.distributed with the gloo backend")

REPO = Path(__file__).resolve().parents[1]
STEPS = 2


def _tiny_config(kind: str) -> dict:
    """The config of the model's single-process test (``_config`` / ``CONFIG`` there)."""
    if kind == "ochmr":
        from test_train_param_regressor import _config

        return _config()
    if kind == "instancehmr":
        from test_train_instancehmr import CONFIG

        return CONFIG
    from test_train_dpmesh import _config  # skips without diffusers

    return _config()


def _load(kind: str, path: Path):
    if kind == "ochmr":
        from hmr_ros.train.param_regressor import load_param_checkpoint

        return load_param_checkpoint(path)
    if kind == "instancehmr":
        from hmr_ros.train.instancehmr import load_instancehmr_checkpoint

        return load_instancehmr_checkpoint(path)
    from hmr_ros.train.dpmesh import load_dpmesh_training_checkpoint

    return load_dpmesh_training_checkpoint(path)


def _torchrun(args, timeout: float = 300) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1",
               PYTHONPATH=os.pathsep.join(filter(None, [str(REPO),
                                                        os.environ.get("PYTHONPATH")])))
    env.pop("WORLD_SIZE", None)
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
                           "--standalone", *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    return proc


@pytest.mark.parametrize("kind", ["ochmr", "instancehmr", "dpmesh"])
def test_torchrun_two_processes_rank0_writes_one_checkpoint(kind, tmp_path):
    config = tmp_path / f"{kind}.yaml"
    config.write_text(yaml.safe_dump(_tiny_config(kind)))
    out = tmp_path / "run"
    proc = _torchrun(["-m", "hmr_ros.train", "--config", str(config), "--out", str(out),
                      "--max-steps", str(STEPS), "--device", "cpu"])
    assert proc.stdout.count("trained to step 2") == 1, proc.stdout  # rank 0 alone prints
    assert (out / "last.pt").is_file() and not list(out.rglob("*.tmp"))
    steps = [r["step"] for r in read_scalars(out / "scalars.jsonl") if "train/total" in r]
    assert steps == [1, 2]  # one log line per step: rank 1 does not log
    ckpt = torch.load(out / "last.pt", weights_only=True)
    assert ckpt["step"] == STEPS
    assert sorted(p.name for p in (out / "checkpoints").iterdir())[-1] == "step_00000002.pt"
    assert not any(k.startswith(("module.", "model.")) for k in ckpt["state_dict"])
    _load(kind, out / "last.pt")  # the bare model's weights: a strict load rebuilds it
    if kind == "ochmr":
        assert ckpt["world_size"] == 2
    if kind == "instancehmr":
        assert ckpt["data_position"] == STEPS * 2 * _tiny_config(kind)["data"]["batch_size"]
        assert (out / "export" / "manifest.json").is_file()


def test_ranks_draw_different_samples_and_end_with_the_same_weights(tmp_path):
    kinds = ["ochmr", "instancehmr"]
    try:
        import diffusers  # noqa: F401

        kinds.append("dpmesh")
    except ImportError:
        pass
    args = []
    for kind in kinds:
        config = tmp_path / f"{kind}.yaml"
        cfg = _tiny_config(kind)
        if kind == "instancehmr":
            cfg = dict(cfg, export=False)
        config.write_text(yaml.safe_dump(cfg))
        args += [kind, str(config), str(tmp_path / kind)]
    proc = _torchrun([str(REPO / "tests" / "ddp_ranks_agree.py"), *args])
    for kind in kinds:
        assert f"ranks agree: {kind}" in proc.stdout, proc.stdout
