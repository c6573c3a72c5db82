"""Run under torchrun by ``test_train_distributed_models.py``:
``torchrun --nproc_per_node=2 --standalone tests/ddp_ranks_agree.py KIND CONFIG OUT [...]``.

For each (kind, config, out) it builds that trainer in the process group, checks that the ranks
draw different first batches, trains 2 steps and checks that every rank
ends with the same parameters (what averaged gradients give; the ranks trained on different
samples). Rank 0 prints ``ranks agree: KIND`` for each; a failed check exits non-zero.
"""

from __future__ import annotations

import sys

import torch
import torch.distributed as dist

STEPS = 2


def build_trainer(kind: str, config: str, out: str):
    if kind == "instancehmr":
        from hmr_ros.train.instancehmr import InstanceHMRTrainer, load_instancehmr_config

        cfg = load_instancehmr_config(config)
        return InstanceHMRTrainer(cfg, out, max_steps=STEPS, device="cpu"), cfg.data.batch_size
    if kind == "dpmesh":
        from hmr_ros.train.dpmesh import DPMeshTrainer, load_dpmesh_train_config

        cfg = load_dpmesh_train_config(config)
        return DPMeshTrainer(cfg, out, max_steps=STEPS, device="cpu"), cfg.data.batch_size
    from hmr_ros.train.param_regressor import ParamTrainer, load_param_config

    cfg = load_param_config(config)
    return ParamTrainer(cfg, out, max_steps=STEPS, device="cpu"), cfg.data.batch_size


def first_images(trainer) -> torch.Tensor:
    loader = trainer.loader if hasattr(trainer, "loader") else trainer._loader()
    return next(iter(loader))["image"]


def gathered(value: torch.Tensor) -> list:
    parts = [torch.empty_like(value) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, value)
    return parts


def main(argv) -> int:
    from hmr_ros.train.distributed import end_processes, start_processes

    processes = start_processes("cpu")
    try:
        for kind, config, out in zip(argv[0::3], argv[1::3], argv[2::3]):
            trainer, batch_size = build_trainer(kind, config, out)
            images = first_images(trainer)
            assert images.shape[0] == batch_size, (kind, images.shape)
            firsts = gathered(images.contiguous())
            assert not torch.equal(firsts[0], firsts[1]), f"{kind}: ranks drew the same batch"
            trainer.train()
            params = torch.cat([p.detach().flatten() for p in trainer.model.parameters()])
            ranks = gathered(params)
            assert all(torch.equal(ranks[0], r) for r in ranks[1:]), (
                f"{kind}: parameters differ between ranks after training")
            if processes.is_main:
                print(f"ranks agree: {kind}", flush=True)
    finally:
        end_processes(processes)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
