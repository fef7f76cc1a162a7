"""Calibration: α* from the reward (or an accuracy budget), the pools at α*, their centroids, and
`calibration.json`, the one artifact the router and the evaluator read."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, PlainSerializer, PlainValidator, TypeAdapter, model_validator

from dimee.common.choices import Distance, EmbeddingKind, Objective
from dimee.common.errors import DimeeError
from dimee.common.files import write_atomically
from dimee.method import arithmetic, certification
from dimee.method.cascade_tuning import Recorded, tune_cascade
from dimee.method.certification import Guarantee
from dimee.method.exits import ExitRecords
from dimee.method.thresholds import TierThresholds
from dimee.method.tiers import CostModel, Tier, TierPlan


class TierCap(BaseModel):
    tier: Tier
    cap: int


def _read_plan(value: object) -> TierPlan:
    if isinstance(value, TierPlan):
        return value
    return TierPlan.of((entry.tier, entry.cap) for entry in TypeAdapter(list[TierCap]).validate_python(value))


def _stored_plan(plan: TierPlan) -> list[TierCap]:
    return [TierCap(tier=tier, cap=cap) for tier, cap in plan]


# The tiers and their caps as calibration.json stores them, a list of {"tier", "cap"} (`TierCap`), held as the one
# `TierPlan` every reader asks: built once, when the calibration is made or loaded.
StoredPlan = Annotated[TierPlan, PlainValidator(_read_plan, json_schema_input_type=list[TierCap]),
                       PlainSerializer(_stored_plan, return_type=list[TierCap])]


# The fields that held the caps beside `plan` in calibration.json before the plan alone held them.
LEGACY_CAPS = {"m": Tier.MOBILE, "n": Tier.EDGE, "num_layers": Tier.CLOUD}


class Calibration(BaseModel):
    """α*, the pools and their centroids, with everything needed to reproduce or audit them."""

    version: int = 1
    model_id: str = "dimee"
    alpha: float
    num_labels: int
    plan: StoredPlan
    cost_model: CostModel
    objective: Objective
    max_drop: float | None = Field(None, description="accuracy points the tuned cascades (and the accuracy-budget "
                                   "objective) may lose against the full model")
    distance: Distance = "euclidean"
    embedding: EmbeddingKind = "layer"
    grid: list[float]
    reward_curve: list[float]
    accuracy_curve: list[float]
    cost_curve: list[float]
    full_model_accuracy: float
    pool_sizes: list[int]
    centroids: list[list[float] | None] = Field(description="per pool; null for an empty pool")
    cascades: dict[str, TierThresholds] = Field(
        default_factory=dict, description="per start tier: exit thresholds tuned for the accuracy budget")
    cascade_guarantees: dict[str, Guarantee] = Field(
        default_factory=dict, description="per start tier: what the calibration split shows of its tuned cascade")
    cascade_disagreement: dict[str, float] = Field(
        default_factory=dict, description="per start tier: the share of its tuned cascade's answers below the cloud "
        "that disagree with the full model on calibration (the online controller's target)")
    warnings: list[str] = Field(default_factory=list, description="what looked wrong in the recorded exits")
    nearest_centroid_quantiles: list[float] = Field(
        default_factory=list, description="101 quantiles (0 to 1) of the calibration samples' distance to their "
        "nearest centroid: the drift score's reference")
    calibration_samples: int | None = Field(
        None, description="calibrated on a stratified subset of this many calibration samples (null: all)")
    calibration_seed: int = Field(0, description="the seed that drew that subset")

    @model_validator(mode="before")
    @classmethod
    def _caps_only_in_the_plan(cls, data: Any) -> Any:
        """A calibration.json written before `plan` was the one home of the caps also holds m, n and num_layers:
        it still loads, and is refused where they disagree with its plan (an edit that changed only one of them
        would otherwise be ignored without a word)."""
        if not isinstance(data, dict) or not LEGACY_CAPS.keys() & data.keys():
            return data
        data = dict(data)
        said = {name: data.pop(name) for name in LEGACY_CAPS if name in data}
        try:
            plan = _read_plan(data.get("plan"))
            caps = {name: plan.cap(tier) for name, tier in LEGACY_CAPS.items() if name in said}
        except ValueError:
            return data  # a plan that does not read, or lacks a tier: the field's own validation says what is wrong
        if said != caps:
            raise ValueError(f"the caps {said} disagree with the plan's {caps}: the plan alone sets them")
        return data

    @property
    def m(self) -> int:
        """The mobile tier's cap: the last layer a sample may run there."""
        return self.plan.cap(Tier.MOBILE)

    @property
    def n(self) -> int:
        """The edge tier's cap."""
        return self.plan.cap(Tier.EDGE)

    @property
    def num_layers(self) -> int:
        """The model's depth L: the cloud runs every layer, so its cap."""
        return self.plan.cap(Tier.CLOUD)

    def at_alpha(self, probs: np.ndarray, embeddings: np.ndarray, alpha: float) -> Calibration:
        """This calibration served at another α: pools and centroids re-derived from the calibration split's
        recorded exits (`probs`) and routing embeddings, and the drift score's reference with them."""
        pools = arithmetic.true_pools(probs, alpha, self.plan)
        means, counts = arithmetic.centroids(embeddings, pools, len(self.plan))
        return self.model_copy(update={"alpha": float(alpha), "pool_sizes": counts,
                                       "centroids": [None if mu is None else mu.tolist() for mu in means],
                                       "nearest_centroid_quantiles": nearest_quantiles(embeddings, means,
                                                                                       self.distance)})

    def config(self) -> CalibrationConfig:
        """The configuration that reproduces this calibration from the same recorded exits."""
        return CalibrationConfig(m=self.m, n=self.n, cost=self.cost_model, objective=self.objective,
                                 max_drop=self.max_drop or 0.5, distance=self.distance, embedding=self.embedding,
                                 model_id=self.model_id, calibration_samples=self.calibration_samples,
                                 calibration_seed=self.calibration_seed)

    def centroid_arrays(self) -> list[np.ndarray | None]:
        return [None if c is None else np.asarray(c, dtype=np.float64) for c in self.centroids]

    def save(self, path: Path) -> None:
        write_atomically(path, self.model_dump_json(indent=2))

    @classmethod
    def load(cls, path: Path) -> Calibration:
        if not path.exists():
            raise DimeeError(f"no calibration at {path}: run `dimee calibrate` first")
        return cls.model_validate_json(path.read_text())


@dataclass(frozen=True)
class Curves:
    """Mean reward, accuracy and mean cost of routing by true pool, at every α of the grid."""

    reward: list[float]
    accuracy: list[float]
    cost: list[float]


class CalibrationConfig(BaseModel):
    """How to calibrate: tier caps (default L/3 and 2L/3), costs, objective, router distance and embedding."""

    model_config = ConfigDict(frozen=True)
    m: int | None = None
    n: int | None = None
    cost: CostModel = Field(default_factory=CostModel)
    objective: Objective = "reward"
    max_drop: float = 0.5  # accuracy points the accuracy-budget objective may lose
    distance: Distance = "euclidean"
    embedding: EmbeddingKind = "layer"
    model_id: str = "dimee"
    calibration_samples: int | None = None  # a stratified subset of the calibration split (a small-set study)
    calibration_seed: int = 0


def default_m_n(num_layers: int) -> tuple[int, int]:
    """m = L/3, n = 2L/3: (2, 4) for 6 layers, (4, 8) for 12, as docs/method.md sets them."""
    return max(1, num_layers // 3), max(2, 2 * num_layers // 3)


def curves(probs: np.ndarray, labels: np.ndarray, plan: TierPlan, cost: CostModel, grid: np.ndarray) -> Curves:
    out = Curves([], [], [])
    for alpha in grid:
        out.reward.append(float(arithmetic.rewards(probs, alpha, plan, cost).mean()))
        served = arithmetic.serve(probs, arithmetic.true_pools(probs, alpha, plan), plan, alpha, cost)
        out.accuracy.append(served.accuracy(labels))
        out.cost.append(float(served.cost.mean()))
    return out


def choose_alpha(grid: np.ndarray, curve: Curves, full_accuracy: float, config: CalibrationConfig) -> float:
    if config.objective == "reward":
        return float(grid[int(np.argmax(curve.reward))])
    # accuracy-budget: the cheapest α within max_drop points of the full model; if none, the most accurate.
    accuracy = curve.accuracy
    allowed = [i for i, acc in enumerate(accuracy) if acc >= full_accuracy - config.max_drop / 100.0 - 1e-12]
    if not allowed:
        return float(grid[int(np.argmax(accuracy))])
    return float(grid[min(allowed, key=lambda i: (curve.cost[i], -accuracy[i]))])


def calibrate(exits: ExitRecords, config: CalibrationConfig | None = None, plan: TierPlan | None = None) -> Calibration:
    """α*, pools and centroids from the calibration split's recorded exits. `plan` overrides the default
    mobile / edge / cloud plan (the device ablation)."""
    config = config or CalibrationConfig()
    probs, labels = exits.probs, np.asarray(exits.labels)
    num_layers, num_labels = probs.shape[1], probs.shape[2]
    default_m, default_n = default_m_n(num_layers)
    m, n = config.m or default_m, config.n or default_n
    plan = plan or TierPlan.default(m, n, num_layers)
    grid = arithmetic.alpha_grid(num_labels)
    curve = curves(probs, labels, plan, config.cost, grid)
    full_accuracy = float((probs[:, -1].argmax(-1) == labels).mean())
    alpha = choose_alpha(grid, curve, full_accuracy, config)
    pools = arithmetic.true_pools(probs, alpha, plan)
    means, counts = arithmetic.centroids(exits.embeddings, pools, len(plan))
    recorded = Recorded.of(probs, labels, exits.hidden_kb())
    budget = certification.Budget(config.max_drop)
    tuned = {plan[s][0].value: tune_cascade(recorded, plan, config.cost, s, budget)
             for s in range(len(plan) - 1)}
    return Calibration(
        model_id=config.model_id, alpha=alpha, num_labels=num_labels, plan=plan, cost_model=config.cost,
        objective=config.objective, max_drop=config.max_drop, distance=config.distance,
        embedding=config.embedding, grid=grid.tolist(), reward_curve=curve.reward, accuracy_curve=curve.accuracy,
        cost_curve=curve.cost, full_model_accuracy=full_accuracy, pool_sizes=counts,
        calibration_samples=config.calibration_samples, calibration_seed=config.calibration_seed,
        nearest_centroid_quantiles=nearest_quantiles(exits.embeddings, means, config.distance),
        centroids=[None if mu is None else mu.tolist() for mu in means],
        cascades={start: t.thresholds for start, t in tuned.items()},
        cascade_guarantees={start: t.guarantee for start, t in tuned.items()},
        cascade_disagreement={start: t.disagreement_below for start, t in tuned.items()},
        warnings=[*one_class_exits(probs, labels, alpha), *empty_pools(plan, counts, alpha),
                  *too_few_for_the_budget(len(labels), config.max_drop)],
    )


def nearest_quantiles(embeddings: np.ndarray, means: list[np.ndarray | None], distance: Distance) -> list[float]:
    """101 quantiles of each calibration sample's distance to its nearest centroid: what the drift score compares
    a window with, so made from the very centroids calibration.json holds."""
    return np.quantile(arithmetic.nearest_distances(embeddings, means, distance), np.linspace(0, 1, 101)).tolist()


def empty_pools(plan: TierPlan, pool_sizes: list[int], alpha: float) -> list[str]:
    """Pools no calibration sample falls in: they get no centroid, so the centroid router never starts a sample on
    their tier."""
    return [f"no calibration sample falls in the {tier.value} pool at α = {alpha:.3f}: it has no centroid, so the "
            f"centroid router never starts a sample on the {tier.value}"
            for (tier, _), size in zip(plan, pool_sizes, strict=True) if size == 0]


def too_few_for_the_budget(samples: int, max_drop: float, risk: float = certification.RISK) -> list[str]:
    """A calibration set too small to show the budget at all: even a setting that loses no sample has an exact
    (Clopper-Pearson) upper bound on its loss of 1 - δ'^(1/N), above the budget when N is below
    ln δ' / ln(1 - budget), δ' being the risk each tuned cascade is tested at."""
    if max_drop <= 0 or samples <= 0:
        return []
    each = certification.level(risk)
    needed = certification.samples_to_show(max_drop / 100, each)
    if samples >= needed:
        return []
    bound = 100 * certification.loss_upper_bound(0, samples, each)
    return [f"{samples} calibration samples are too few for a {max_drop:g}-point budget: a setting that loses none "
            f"of them is only bounded to {bound:.2f} points at {100 * (1 - each):.1f}% confidence, so the tuned "
            f"cascades will send every sample to the cloud; {needed} samples can show it"]


def one_class_exits(probs: np.ndarray, labels: np.ndarray, alpha: float, share: float = 0.95) -> list[str]:
    """Exits that answer nearly every sample leaving there with one class the labels do not favour as much: a
    weak head saying the majority class with confidence ≥ α, which makes α look cheap and right."""
    warnings = []
    exit_at = arithmetic.exit_layers(probs, alpha)
    prior = np.bincount(labels, minlength=probs.shape[-1]) / max(len(labels), 1)
    for layer in range(1, probs.shape[1]):
        leaving = exit_at == layer
        if leaving.sum() < max(20, 0.02 * len(labels)):
            continue
        said = np.bincount(probs[leaving, layer - 1].argmax(-1), minlength=probs.shape[-1]) / leaving.sum()
        top = int(said.argmax())
        if said[top] >= share and prior[top] < said[top] - 0.05:
            warnings.append(f"exit {layer} answers {100 * said[top]:.0f}% of the {int(leaving.sum())} samples "
                            f"leaving there with class {top} ({100 * prior[top]:.0f}% of the labels) at α = "
                            f"{alpha:.3f}: α may be degenerate; prefer --objective accuracy-budget")
    return warnings
