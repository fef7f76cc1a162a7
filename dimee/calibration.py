"""Calibration: α* from the reward (or an accuracy budget), the pools at α*, their centroids, and
`calibration.json`, the one artifact the router and the evaluator read."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import BaseModel, Field

from dimee import method
from dimee.errors import DimeeError
from dimee.tiers import CostModel, Tier, TierPlan

Objective = Literal["reward", "accuracy-budget"]
EmbeddingKind = Literal["layer", "raw"]


class TierCap(BaseModel):
    tier: Tier
    cap: int


class Calibration(BaseModel):
    """α*, the pools and their centroids, with everything needed to reproduce or audit them."""

    version: int = 1
    model_id: str = "dimee"
    alpha: float
    m: int
    n: int
    num_layers: int
    num_labels: int
    plan: list[TierCap]
    cost_model: CostModel
    objective: Objective
    max_drop: float | None = None
    distance: method.Distance = "euclidean"
    embedding: EmbeddingKind = "layer"
    grid: list[float]
    reward_curve: list[float]
    accuracy_curve: list[float]
    cost_curve: list[float]
    full_model_accuracy: float
    pool_sizes: list[int]
    centroids: list[list[float] | None] = Field(description="per pool; null for an empty pool")

    def tier_plan(self) -> TierPlan:
        return TierPlan.of((entry.tier, entry.cap) for entry in self.plan)

    def at_alpha(self, probs: np.ndarray, embeddings: np.ndarray, alpha: float) -> Calibration:
        """This calibration served at another α: pools and centroids re-derived from the calibration split's
        recorded exits (`probs`) and routing embeddings."""
        pools = method.true_pools(probs, alpha, self.tier_plan())
        means, counts = method.centroids(embeddings, pools, len(self.plan))
        return self.model_copy(update={"alpha": float(alpha), "pool_sizes": counts,
                                       "centroids": [None if mu is None else mu.tolist() for mu in means]})

    def centroid_arrays(self) -> list[np.ndarray | None]:
        return [None if c is None else np.asarray(c, dtype=np.float64) for c in self.centroids]

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(".partial")
        partial.write_text(self.model_dump_json(indent=2))
        partial.replace(path)

    @classmethod
    def load(cls, path: Path) -> Calibration:
        if not path.exists():
            raise DimeeError(f"no calibration at {path}: run `dimee calibrate` first")
        return cls.model_validate_json(path.read_text())


def curves(
    probs: np.ndarray, labels: np.ndarray, plan: TierPlan, cost: CostModel, grid: np.ndarray
) -> tuple[list[float], list[float], list[float]]:
    """Mean reward, accuracy and mean cost of routing by true pool, at every α of the grid."""
    reward, accuracy, mean_cost = [], [], []
    for alpha in grid:
        reward.append(float(method.rewards(probs, alpha, plan, cost).mean()))
        served = method.serve(probs, method.true_pools(probs, alpha, plan), plan, alpha, cost)
        accuracy.append(served.accuracy(labels))
        mean_cost.append(float(served.cost.mean()))
    return reward, accuracy, mean_cost


def choose_alpha(
    grid: np.ndarray, reward: list[float], accuracy: list[float], mean_cost: list[float],
    full_accuracy: float, objective: Objective, max_drop: float,
) -> float:
    if objective == "reward":
        return float(grid[int(np.argmax(reward))])
    # accuracy-budget: the cheapest α within max_drop points of the full model; if none, the most accurate.
    allowed = [i for i, acc in enumerate(accuracy) if acc >= full_accuracy - max_drop / 100.0 - 1e-12]
    if not allowed:
        return float(grid[int(np.argmax(accuracy))])
    return float(grid[min(allowed, key=lambda i: (mean_cost[i], -accuracy[i]))])


def calibrate(
    probs: np.ndarray,
    labels: np.ndarray,
    embeddings: np.ndarray,
    m: int,
    n: int,
    cost: CostModel | None = None,
    objective: Objective = "reward",
    max_drop: float = 0.5,
    distance: method.Distance = "euclidean",
    embedding: EmbeddingKind = "layer",
    plan: TierPlan | None = None,
    model_id: str = "dimee",
) -> Calibration:
    cost = cost or CostModel()
    num_layers, num_labels = probs.shape[1], probs.shape[2]
    plan = plan or TierPlan.default(m, n, num_layers)
    grid = method.alpha_grid(num_labels)
    labels = np.asarray(labels)
    reward, accuracy, mean_cost = curves(probs, labels, plan, cost, grid)
    full_accuracy = float((probs[:, -1].argmax(-1) == labels).mean())
    alpha = choose_alpha(grid, reward, accuracy, mean_cost, full_accuracy, objective, max_drop)
    pools = method.true_pools(probs, alpha, plan)
    means, counts = method.centroids(embeddings, pools, len(plan))
    return Calibration(
        model_id=model_id, alpha=alpha, m=m, n=n, num_layers=num_layers, num_labels=num_labels,
        plan=[TierCap(tier=t, cap=c) for t, c in plan], cost_model=cost, objective=objective,
        max_drop=max_drop if objective == "accuracy-budget" else None, distance=distance, embedding=embedding,
        grid=grid.tolist(), reward_curve=reward, accuracy_curve=accuracy, cost_curve=mean_cost,
        full_model_accuracy=full_accuracy, pool_sizes=counts,
        centroids=[None if mu is None else mu.tolist() for mu in means],
    )
