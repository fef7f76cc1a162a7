"""The artifact layout of a work folder: the one place that knows where each artifact lives.

    WORKDIR/model/                          model.safetensors + dimee_model.json (the spec) + tokenizer
    WORKDIR/calibration.json                α*, pools, centroids, cost model, curves
    WORKDIR/policy.json                     the default routing policy chosen on calibration
    WORKDIR/cost_model.json                 a cost model measured on some machine (`dimee costs`)
    WORKDIR/learned_router.json             the learned router's coefficients
    WORKDIR/token_rarity.json               token rarity in the training split (a learned-router feature)
    WORKDIR/train_history.json              training configuration and per-epoch figures
    WORKDIR/records/{split}.safetensors     recorded per-layer probabilities and routing embeddings
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar


class _Under:
    """A path under the work folder, read as an attribute: `workdir.model`."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __get__(self, workdir: Workdir, owner: type) -> Path:
        return workdir.root / self.name


@dataclass(frozen=True)
class Workdir:
    root: Path

    # The files of a model folder: WORKDIR/model, or any folder a model is saved to.
    WEIGHTS: ClassVar[str] = "model.safetensors"
    SPEC: ClassVar[str] = "dimee_model.json"

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))

    @classmethod
    def of(cls, folder: Workdir | Path | str) -> Workdir:
        return folder if isinstance(folder, Workdir) else cls(Path(folder))

    model = _Under("model")
    calibration = _Under("calibration.json")
    policy = _Under("policy.json")
    cost_model = _Under("cost_model.json")
    learned_router = _Under("learned_router.json")
    rarity = _Under("token_rarity.json")
    train_history = _Under("train_history.json")

    def exits(self, split: str) -> Path:
        """Recorded exits of a split (what the full model said at every layer)."""
        return self.root / "records" / f"{split}.safetensors"

    @property
    def weights(self) -> Path:
        return self.model / self.WEIGHTS

    def has_model(self) -> bool:
        return self.weights.exists()

    def __str__(self) -> str:
        return str(self.root)
