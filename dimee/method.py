"""DIMEE's arithmetic on recorded exit probabilities (DESIGN.md section 1): exit layers, pools, rewards,
serving outcomes and nearest-centroid routing. Pure numpy, so calibration and every offline sweep run in
seconds without the model.

Shapes: probs (N, L, C) softmax of every exit; embeddings (N, H). Layers are 1-based. A "tier plan" is the
ordered list of (tier, cap) the deployment has, e.g. [(mobile, m), (edge, n), (cloud, L)]; a pool is an
index into it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from dimee.config import CostModel, Tier

TierPlan = list[tuple[Tier, int]]
Distance = Literal["euclidean", "cosine"]


def default_plan(m: int, n: int, num_layers: int) -> TierPlan:
    if not 0 < m < n < num_layers:
        raise ValueError(f"need 0 < m < n < L, got m={m}, n={n}, L={num_layers}")
    return [(Tier.MOBILE, m), (Tier.EDGE, n), (Tier.CLOUD, num_layers)]


def alpha_grid(num_labels: int, points: int = 10) -> np.ndarray:
    return np.linspace(1.0 / num_labels, 1.0, points)


def exit_layers(probs: np.ndarray, alpha: float, cap: int | np.ndarray | None = None) -> np.ndarray:
    """τ: first layer i ≤ cap with conf_i ≥ alpha, else cap (default L)."""
    conf = probs.max(-1)
    num_layers = conf.shape[1]
    caps = np.broadcast_to(np.asarray(num_layers if cap is None else cap), (conf.shape[0],))
    layer_no = np.arange(1, num_layers + 1)
    passes = (conf >= alpha) & (layer_no[None, :] <= caps[:, None])
    first = np.where(passes.any(1), passes.argmax(1) + 1, caps)
    return first.astype(np.int64)


def true_pools(probs: np.ndarray, alpha: float, plan: TierPlan) -> np.ndarray:
    """The pool of each sample: the first tier whose cap reaches τ_α(x); beyond every cap, the last tier."""
    tau = exit_layers(probs, alpha)
    caps = np.array([cap for _, cap in plan])
    return np.minimum(np.searchsorted(caps, tau, side="left"), len(plan) - 1)


@dataclass
class Served:
    """Outcome of serving each sample on a given pool's tier with early exit at alpha."""

    pred: np.ndarray
    exit_layer: np.ndarray
    cost: np.ndarray
    tier: np.ndarray  # pool index of the tier that answered

    def accuracy(self, labels: np.ndarray) -> float:
        return float((self.pred == labels).mean()) if len(labels) else float("nan")


def layer_costs(cost: CostModel, tier: Tier, layers_run: np.ndarray) -> np.ndarray:
    """Vectorised CostModel.breakdown(...)['total']."""
    per_layer = {Tier.MOBILE: cost.lambda_m, Tier.EDGE: cost.lambda_e, Tier.CLOUD: cost.lambda_c}[tier]
    fixed = {Tier.MOBILE: 0.0, Tier.EDGE: cost.o_e, Tier.CLOUD: cost.o_c + cost.kappa}[tier]
    return fixed + per_layer * layers_run


def serve(probs: np.ndarray, pools: np.ndarray, plan: TierPlan, alpha: float, cost: CostModel) -> Served:
    caps = np.array([cap for _, cap in plan])[pools]
    exit_at = exit_layers(probs, alpha, caps)
    pred = probs[np.arange(len(pools)), exit_at - 1].argmax(-1)
    costs = np.zeros(len(pools))
    for index, (tier, _) in enumerate(plan):
        chosen = pools == index
        costs[chosen] = layer_costs(cost, tier, exit_at[chosen])
    return Served(pred, exit_at, costs, pools.copy())


def rewards(probs: np.ndarray, alpha: float, plan: TierPlan, cost: CostModel) -> np.ndarray:
    """Per-sample reward at alpha: conf at the exit minus β·cost; in the cloud, conf_L and the cost of L."""
    pools = true_pools(probs, alpha, plan)
    conf = probs.max(-1)
    num_layers = conf.shape[1]
    caps = np.array([cap for _, cap in plan])[pools]
    exit_at = exit_layers(probs, alpha, caps)
    out = np.empty(len(pools))
    for index, (tier, _) in enumerate(plan):
        chosen = pools == index
        if tier is Tier.CLOUD:
            layers = np.full(chosen.sum(), num_layers)
            out[chosen] = conf[chosen, num_layers - 1] - cost.beta * layer_costs(cost, tier, layers)
        else:
            layers = exit_at[chosen]
            out[chosen] = conf[chosen, layers - 1] - cost.beta * layer_costs(cost, tier, layers)
    return out


def centroids(embeddings: np.ndarray, pools: np.ndarray, num_pools: int) -> tuple[list[np.ndarray | None], list[int]]:
    """Mean routing embedding and size of every pool; an empty pool has no centroid."""
    means: list[np.ndarray | None] = []
    counts = []
    for index in range(num_pools):
        members = embeddings[pools == index]
        counts.append(len(members))
        means.append(members.astype(np.float64).mean(0) if len(members) else None)
    return means, counts


def distances(embedding: np.ndarray, means: list[np.ndarray | None], distance: Distance) -> np.ndarray:
    """Distance to every centroid; +inf for an empty pool so it is never chosen."""
    out = np.full(len(means), np.inf)
    for index, mean in enumerate(means):
        if mean is None:
            continue
        if distance == "cosine":
            denom = np.linalg.norm(embedding) * np.linalg.norm(mean)
            out[index] = 1.0 - float(embedding @ mean) / denom if denom > 0 else 1.0
        else:
            out[index] = float(np.linalg.norm(embedding - mean))
    return out


def nearest_pool(embedding: np.ndarray, means: list[np.ndarray | None], distance: Distance) -> int:
    """Index of the nearest centroid; with no centroid at all, the last (largest) tier."""
    dist = distances(embedding, means, distance)
    return int(np.argmin(dist)) if np.isfinite(dist).any() else len(means) - 1


def route(
    embeddings: np.ndarray, means: list[np.ndarray | None], counts: list[int], distance: Distance,
    adaptive: bool,
) -> np.ndarray:
    """Route a stream in order. Adaptive (DIMEE-D): μ_k ← μ_k + (e − μ_k)/(N_k + 1), N_k ← N_k + 1."""
    means = [None if mu is None else mu.copy() for mu in means]
    counts = list(counts)
    out = np.empty(len(embeddings), dtype=np.int64)
    if not adaptive and distance == "euclidean" and all(mu is not None for mu in means):
        stacked = np.stack(means)  # fast path: one matrix op for the whole stream
        d2 = ((embeddings[:, None, :].astype(np.float64) - stacked[None]) ** 2).sum(-1)
        return d2.argmin(1)
    for i, embedding in enumerate(embeddings.astype(np.float64)):
        pool = nearest_pool(embedding, means, distance)
        out[i] = pool
        if adaptive and means[pool] is not None:
            means[pool] = means[pool] + (embedding - means[pool]) / (counts[pool] + 1)
            counts[pool] += 1
    return out


def route_with_feedback(
    embeddings: np.ndarray, means: list[np.ndarray | None], counts: list[int], distance: Distance,
    observed: np.ndarray, update: Literal["mean", "ema"] = "mean", gamma: float = 0.05,
) -> np.ndarray:
    """Route a stream in order; after each sample is served, move the centroid of the pool it was *observed*
    in (known for free from where it exited), not the one it was routed to. Label-free."""
    means = [None if mu is None else mu.copy() for mu in means]
    counts = list(counts)
    out = np.empty(len(embeddings), dtype=np.int64)
    for i, embedding in enumerate(embeddings.astype(np.float64)):
        out[i] = nearest_pool(embedding, means, distance)
        k = int(observed[i])
        if means[k] is None:  # an empty pool gets its first member
            means[k], counts[k] = embedding.copy(), 1
            continue
        step = gamma if update == "ema" else 1.0 / (counts[k] + 1)
        means[k] = means[k] + (embedding - means[k]) * step
        counts[k] += 1
    return out
