"""Recorded exits of a split: what the full model said at every layer, kept so that calibration, every
baseline and every sweep can be recomputed without running the model again."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file, save_file

from dimee.common.errors import DimeeError
from dimee.method.tiers import hidden_state_kb


@dataclass
class ExitRecords:
    probs: np.ndarray  # (N, L, C)
    embeddings: np.ndarray  # (N, H) routing embeddings
    labels: np.ndarray  # (N,)
    tokens: np.ndarray | None = None  # (N,) tokens the encoder read; None in records from before they were kept

    def hidden_kb(self) -> np.ndarray:
        """KB of the hidden state a `continue` escalation carries for each sample (the routing embedding has the
        hidden size); zero where tokens are unknown."""
        if self.tokens is None:
            return np.zeros(len(self.labels))
        return np.asarray(hidden_state_kb(self.tokens.astype(np.int64), self.embeddings.shape[1]), dtype=np.float64)

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tensors = {"probs": self.probs.astype(np.float32), "embeddings": self.embeddings.astype(np.float32),
                   "labels": self.labels.astype(np.int64)}
        if self.tokens is not None:
            tensors["tokens"] = self.tokens.astype(np.int64)
        save_file(tensors, str(path))

    @classmethod
    def load(cls, path: Path) -> ExitRecords:
        if not path.exists():
            raise DimeeError(f"no recorded exits at {path}: run `dimee calibrate` first")
        tensors = load_file(str(path))
        return cls(tensors["probs"], tensors["embeddings"], tensors["labels"], tensors.get("tokens"))
