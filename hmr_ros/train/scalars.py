"""Scalar logging: TensorBoard event files (when ``tensorboard`` is installed) plus, always, a
``scalars.jsonl`` file -- one JSON object per logging event, ``{"step": N, "tag": value, ...}`` --
that needs nothing to read (``pandas.read_json(path, lines=True)``) and that tests check."""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path
from typing import Dict, Optional

__all__ = ["ScalarLogger", "read_scalars"]


class ScalarLogger:
    """``log(step, {tag: value})``; ``close()`` flushes. Only rank 0 should create one."""

    def __init__(self, out_dir, tensorboard: bool = True) -> None:
        self.out_dir = Path(out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.jsonl_path = self.out_dir / "scalars.jsonl"
        self._jsonl = open(self.jsonl_path, "a", encoding="utf-8")
        self.writer = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.writer = SummaryWriter(str(self.out_dir / "tensorboard"))
            except ImportError:  # pragma: no cover - depends on the environment
                warnings.warn("the 'tensorboard' package is not installed: scalars go to "
                              f"{self.jsonl_path} only", stacklevel=2)

    def log(self, step: int, scalars: Dict[str, float]) -> None:
        clean = {k: float(v) for k, v in scalars.items()}
        record = {"step": int(step)}
        record.update({k: (v if math.isfinite(v) else None) for k, v in clean.items()})
        self._jsonl.write(json.dumps(record) + "\n")
        self._jsonl.flush()
        if self.writer is not None:
            for tag, value in clean.items():
                self.writer.add_scalar(tag, value, step)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.flush()
            self.writer.close()
            self.writer = None
        if not self._jsonl.closed:
            self._jsonl.close()


def read_scalars(path, tag: Optional[str] = None):
    """Records of a ``scalars.jsonl`` (or ``[(step, value)]`` of one ``tag``)."""
    records = [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
    if tag is None:
        return records
    return [(r["step"], r[tag]) for r in records if tag in r]
