"""Recorded exits of a split: what the full model said at every layer, kept so that calibration, every
baseline and every sweep can be recomputed without running the model again."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file, save_file

from dimee.errors import DimeeError


@dataclass
class ExitRecords:
    probs: np.ndarray  # (N, L, C)
    embeddings: np.ndarray  # (N, H) routing embeddings
    labels: np.ndarray  # (N,)

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        save_file({"probs": self.probs.astype(np.float32), "embeddings": self.embeddings.astype(np.float32),
                   "labels": self.labels.astype(np.int64)}, str(path))

    @classmethod
    def load(cls, path: Path) -> ExitRecords:
        if not path.exists():
            raise DimeeError(f"no recorded exits at {path}: run `dimee calibrate` first")
        tensors = load_file(str(path))
        return cls(tensors["probs"], tensors["embeddings"], tensors["labels"])
