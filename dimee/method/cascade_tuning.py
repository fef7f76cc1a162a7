"""Per-tier thresholds of a cascade, tuned on the calibration split: the cheapest setting whose accuracy is
within the budget of the full model's, found by an exhaustive search over a threshold grid (seconds for
thousands of samples).

A cascade starts every sample on one tier; in `continue` mode a sample that is not sure enough at a tier's
cap goes up with its hidden state. What happens to a sample on a tier depends only on that tier's own
thresholds (where it starts there is fixed by the plan), so every combination's accuracy and cost are sums of
per-tier terms: the search evaluates each tier's options once and combines them with matrix products.

Options per tier: an exit threshold (or none: run to the cap), and on the last tier before the cloud also a
lower `keep` threshold for answering at the cap rather than escalating; the cloud always answers.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dimee.method.thresholds import TierThresholds
from dimee.method.tiers import CostModel, TierPlan

# Confidences crowd near 1, so the grid is dense there; None means "never exit early".
_HIGH = (0.9, 0.95, 0.97, 0.98, 0.99, 0.995, 0.998, 0.999)


def threshold_grid(num_labels: int, points: int = 21) -> list[float | None]:
    values = np.unique(np.round(np.concatenate([np.linspace(1.0 / num_labels, 1.0, points), _HIGH]), 6))
    return [*values.tolist(), None]


@dataclass
class Recorded:
    """What the search looks at: every exit's prediction and confidence on the calibration split."""

    conf: np.ndarray  # (N, L)
    correct: np.ndarray  # (N, L) the exit's argmax equals the label
    labels_count: int
    num_labels: int
    hidden_kb: np.ndarray | None = None  # (N,) what a `continue` escalation carries, for its cost

    @classmethod
    def of(cls, probs: np.ndarray, labels: np.ndarray, hidden_kb: np.ndarray | None = None) -> Recorded:
        return cls(probs.max(-1), probs.argmax(-1) == np.asarray(labels)[:, None], len(labels), probs.shape[-1],
                   hidden_kb)


@dataclass
class TierOptions:
    """One tier's outcome under each of its options: (option, sample) arrays."""

    options: list[tuple[float | None, float | None]]  # (exit, keep)
    answered: np.ndarray
    correct: np.ndarray
    cost: np.ndarray


def _tier_options(data: Recorded, plan: TierPlan, cost: CostModel, tier_index: int,
                  begin: int) -> TierOptions:
    tier, cap = plan[tier_index]
    last, rows = tier_index == len(plan) - 1, np.arange(data.labels_count)
    grid = threshold_grid(data.num_labels)
    keeps: list[float | None] = [None]
    if tier_index == len(plan) - 2:  # the last tier before the cloud may answer at its cap below its exit
        keeps += [g for g in grid if g is not None]
    options = [(e, k) for e in grid for k in keeps if k is None or e is None or k < e]
    layer_no = np.arange(1, data.conf.shape[1] + 1)
    window = (layer_no > begin) & (layer_no <= cap)
    shape = (len(options), data.labels_count)
    answered, correct, costs = np.zeros(shape, np.float32), np.zeros(shape, np.float32), np.zeros(shape, np.float32)
    for i, (exit_conf, keep) in enumerate(options):
        passes = (data.conf >= (np.inf if exit_conf is None else exit_conf)) & window
        exit_at = np.where(passes.any(1), passes.argmax(1) + 1, cap)
        below = min(v for v in (exit_conf, keep, np.inf) if v is not None)
        answered[i] = last | (data.conf[rows, exit_at - 1] >= below)
        correct[i] = answered[i] * data.correct[rows, exit_at - 1]
        costs[i] = cost.run(tier, exit_at - begin)
    if begin > 0 and data.hidden_kb is not None:  # entered by escalation: the hidden state came along
        costs += np.asarray(cost.carry(data.hidden_kb), dtype=np.float32)[None, :]
    return TierOptions(options, answered, correct, costs)


def _totals(tiers: list[TierOptions]) -> tuple[np.ndarray, np.ndarray]:
    """Correct count and total cost of every combination, shaped (options of tier 1, of tier 2, …)."""
    correct, cost = tiers[-1].correct, tiers[-1].cost
    for tier in reversed(tiers[1:-1]):  # the inner tiers per sample: small enough to hold
        go_on = 1.0 - tier.answered
        correct = (tier.correct[:, None] + go_on[:, None] * correct[None]).reshape(-1, correct.shape[-1])
        cost = (tier.cost[:, None] + go_on[:, None] * cost[None]).reshape(-1, cost.shape[-1])
    first = tiers[0]
    if len(tiers) > 1:  # the outermost tier by a matrix product, never per sample
        go_on = 1.0 - first.answered
        correct = first.correct.sum(1, keepdims=True) + go_on @ correct.T
        cost = first.cost.sum(1, keepdims=True) + go_on @ cost.T
    else:
        correct, cost = correct.sum(1, keepdims=True), cost.sum(1, keepdims=True)
    shape = tuple(len(t.options) for t in tiers)
    return correct.reshape(shape), cost.reshape(shape)


@dataclass(frozen=True)
class Tuned:
    thresholds: TierThresholds
    accuracy: float  # on the calibration split
    cost: float


def tune_cascade(data: Recorded, plan: TierPlan, cost: CostModel, start: int, max_drop: float) -> Tuned:
    """The cheapest thresholds for a `continue` cascade from tier `start` whose calibration accuracy is
    within `max_drop` points of the full model's (if none is, the most accurate)."""
    begins = [0 if t == start else plan[t - 1][1] for t in range(start, len(plan))]
    tiers = [_tier_options(data, plan, cost, t, b) for t, b in zip(range(start, len(plan)), begins, strict=True)]
    correct, total_cost = _totals(tiers)
    # counts are whole numbers even in float32; divide in float64 so the budget test is exact
    accuracy = np.rint(correct).astype(np.float64) / data.labels_count
    mean_cost = total_cost.astype(np.float64) / data.labels_count
    target = float(data.correct[:, -1].mean()) - max_drop / 100.0 - 1e-9
    allowed = accuracy >= target
    if allowed.any():
        best = np.unravel_index(np.argmin(np.where(allowed, mean_cost - 1e-9 * accuracy, np.inf)), accuracy.shape)
    else:
        best = np.unravel_index(np.argmax(accuracy), accuracy.shape)
    exits: list[float | None] = [None] * len(plan)
    keeps: list[float | None] = [None] * len(plan)
    for tier, option in zip(range(start, len(plan)), best, strict=True):
        exits[tier], keeps[tier] = tiers[tier - start].options[option]
    return Tuned(TierThresholds(exit=exits, keep=keeps), float(accuracy[best]), float(mean_cost[best]))
