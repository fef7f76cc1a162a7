"""DIMEE's arithmetic on recorded exit probabilities (docs/method.md section 1): exit layers, pools, rewards,
serving outcomes and nearest-centroid routing. Pure numpy, so calibration and every offline sweep run in
seconds without the model.

Shapes: probs (N, L, C) softmax of every exit; embeddings (N, H). Layers are 1-based. A pool is an index
into the deployment's `TierPlan`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dimee.common.choices import Distance
from dimee.method.tiers import CostModel, Tier, TierPlan


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
    return plan.pools_of_exits(exit_layers(probs, alpha))


@dataclass
class Served:
    """Outcome of serving each sample on a given pool's tier with early exit at alpha."""

    pred: np.ndarray
    exit_layer: np.ndarray
    cost: np.ndarray
    tier: np.ndarray  # pool index of the tier that answered

    def accuracy(self, labels: np.ndarray) -> float:
        return float((self.pred == labels).mean()) if len(labels) else float("nan")


def serve(probs: np.ndarray, pools: np.ndarray, plan: TierPlan, alpha: float, cost: CostModel) -> Served:
    exit_at = exit_layers(probs, alpha, plan.caps_of(pools))
    pred = probs[np.arange(len(pools)), exit_at - 1].argmax(-1)
    costs = np.zeros(len(pools))
    for index, (tier, _) in enumerate(plan):
        chosen = pools == index
        costs[chosen] = cost.run(tier, exit_at[chosen])
    return Served(pred, exit_at, costs, pools.copy())


def rewards(probs: np.ndarray, alpha: float, plan: TierPlan, cost: CostModel) -> np.ndarray:
    """Per-sample reward at alpha: conf at the exit minus β·cost; in the cloud, conf_L and the cost of L."""
    pools = true_pools(probs, alpha, plan)
    conf = probs.max(-1)
    num_layers = conf.shape[1]
    exit_at = exit_layers(probs, alpha, plan.caps_of(pools))
    out = np.empty(len(pools))
    for index, (tier, _) in enumerate(plan):
        chosen = pools == index
        if tier is Tier.CLOUD:
            layers = np.full(chosen.sum(), num_layers)
            out[chosen] = conf[chosen, num_layers - 1] - cost.beta * cost.run(tier, layers)
        else:
            layers = exit_at[chosen]
            out[chosen] = conf[chosen, layers - 1] - cost.beta * cost.run(tier, layers)
    return out


def running_mean_step(mean: np.ndarray, embedding: np.ndarray, count: int, gamma: float = 0.0) -> np.ndarray:
    """One centroid update: μ + (e − μ)/(N + 1), the running mean (DIMEE-D); with gamma > 0 the exponential
    moving average μ + γ(e − μ). The Redis store's Lua script computes the same step server-side."""
    delta = embedding - mean
    return mean + (delta * gamma if gamma > 0 else delta / (count + 1))


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
    embedding = np.asarray(embedding, dtype=np.float64)
    return _distances(embedding[None], *_stacked(means, embedding.shape[-1]), distance)[0]


def nearest_distances(embeddings: np.ndarray, means: list[np.ndarray | None], distance: Distance) -> np.ndarray:
    """Each embedding's distance to its nearest centroid (+inf with no centroid at all)."""
    embeddings = np.asarray(embeddings, dtype=np.float64)
    return _distances(embeddings, *_stacked(means, embeddings.shape[-1]), distance).min(1)


def nearest_pool(embedding: np.ndarray, means: list[np.ndarray | None], distance: Distance) -> int:
    """Index of the nearest centroid; with no centroid at all, the last (largest) tier."""
    return int(_nearest(distances(embedding, means, distance)[None])[0])


@dataclass
class Routing:
    """A batch routed in order: each sample's pool and distance to every centroid (+inf for an empty pool),
    and the centroids as they stand after it (moved, in adaptive mode)."""

    pools: np.ndarray  # (N,)
    distances: np.ndarray  # (N, P)
    means: list[np.ndarray | None]
    counts: list[int]


def _stacked(means: list[np.ndarray | None], dim: int) -> tuple[np.ndarray, np.ndarray]:
    """The centroids as one (P, H) float64 matrix (zeros for an empty pool) and which pools have one."""
    present = np.array([mu is not None for mu in means])
    return np.stack([np.zeros(dim) if mu is None else np.asarray(mu, dtype=np.float64) for mu in means]), present


def _distances(embeddings: np.ndarray, stacked: np.ndarray, present: np.ndarray, distance: Distance) -> np.ndarray:
    if distance == "cosine":
        denom = np.linalg.norm(embeddings, axis=-1)[:, None] * np.linalg.norm(stacked, axis=-1)[None, :]
        with np.errstate(invalid="ignore", divide="ignore"):
            out = np.where(denom > 0, 1.0 - (embeddings @ stacked.T) / denom, 1.0)
    else:
        out = np.sqrt(((embeddings[:, None, :] - stacked[None]) ** 2).sum(-1))
    out[:, ~present] = np.inf
    return out


def route_batch(embeddings: np.ndarray, means: list[np.ndarray | None], counts: list[int], distance: Distance,
                adaptive: bool) -> Routing:
    """Route samples in order to the nearest centroid (the last pool when there is none). Adaptive (DIMEE-D):
    after each sample μ_k ← μ_k + (e − μ_k)/(N_k + 1), N_k ← N_k + 1, so later samples see the move — the
    one definition of routing for the offline evaluator and the router alike."""
    embeddings = np.asarray(embeddings, dtype=np.float64)
    stacked, present = _stacked(means, embeddings.shape[-1])
    counts = list(counts)
    if not adaptive or not present.any():  # (no centroid at all: nothing to move)
        dist = _distances(embeddings, stacked, present, distance)
    else:
        dist = np.empty((len(embeddings), len(means)))
        for i, embedding in enumerate(embeddings):  # sequential: each sample sees the moves before it
            dist[i] = _distances(embedding[None], stacked, present, distance)[0]
            pool = int(dist[i].argmin())  # a present pool: the others are +inf
            stacked[pool] = running_mean_step(stacked[pool], embedding, counts[pool])
            counts[pool] += 1
    moved = [stacked[k].copy() if present[k] else None for k in range(len(means))]
    return Routing(_nearest(dist), dist, moved, counts)


def _nearest(dist: np.ndarray) -> np.ndarray:
    """Row-wise argmin; a row with no finite distance (no centroid at all) goes to the last pool."""
    return np.where(np.isfinite(dist).any(1), dist.argmin(1), dist.shape[1] - 1).astype(np.int64)


def route(
    embeddings: np.ndarray, means: list[np.ndarray | None], counts: list[int], distance: Distance,
    adaptive: bool,
) -> np.ndarray:
    """The pool of each sample of a stream routed in order (see `route_batch`)."""
    return route_batch(embeddings, means, counts, distance, adaptive).pools


@dataclass(frozen=True)
class Centroids:
    """Pool centroids as a router starts from them: means (None: an empty pool), counts and the distance."""

    means: list[np.ndarray | None]
    counts: list[int]
    distance: Distance = "euclidean"


def route_with_feedback(embeddings: np.ndarray, start: Centroids, observed: np.ndarray,
                        gamma: float | None = None) -> np.ndarray:
    """Route a stream in order; after each sample is served, move the centroid of the pool it was *observed*
    in (known for free from where it exited), not the one it was routed to. Label-free. The step is the
    running mean, or with `gamma` the exponential moving average."""
    means = [None if mu is None else mu.copy() for mu in start.means]
    counts, distance = list(start.counts), start.distance
    out = np.empty(len(embeddings), dtype=np.int64)
    for i, embedding in enumerate(embeddings.astype(np.float64)):
        out[i] = nearest_pool(embedding, means, distance)
        k = int(observed[i])
        if means[k] is None:  # an empty pool gets its first member
            means[k], counts[k] = embedding.copy(), 1
            continue
        means[k] = running_mean_step(means[k], embedding, counts[k], gamma or 0.0)
        counts[k] += 1
    return out
