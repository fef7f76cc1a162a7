"""The artifact layout of a work folder: the one place that knows where each artifact lives.

    WORKDIR/model/                          safetensors + JSON spec + tokenizer
    WORKDIR/calibration.json                α*, pools, centroids, cost model, curves
    WORKDIR/policy.json                     the default routing policy chosen on calibration
    WORKDIR/learned_router.json             the learned router's coefficients
    WORKDIR/token_rarity.json               token rarity in the training split (a learned-router feature)
    WORKDIR/train_history.json              training configuration and per-epoch figures
    WORKDIR/records/{split}.safetensors     recorded per-layer probabilities and routing embeddings
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Workdir:
    root: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))

    @classmethod
    def of(cls, folder: Workdir | Path | str) -> Workdir:
        return folder if isinstance(folder, Workdir) else cls(Path(folder))

    @property
    def model(self) -> Path:
        return self.root / "model"

    @property
    def calibration(self) -> Path:
        return self.root / "calibration.json"

    @property
    def policy(self) -> Path:
        return self.root / "policy.json"

    @property
    def learned_router(self) -> Path:
        return self.root / "learned_router.json"

    @property
    def rarity(self) -> Path:
        return self.root / "token_rarity.json"

    @property
    def train_history(self) -> Path:
        return self.root / "train_history.json"

    def exits(self, split: str) -> Path:
        """Recorded exits of a split (what the full model said at every layer)."""
        return self.root / "records" / f"{split}.safetensors"

    def has_model(self) -> bool:
        return (self.model / "model.safetensors").exists()

    def __str__(self) -> str:
        return str(self.root)
