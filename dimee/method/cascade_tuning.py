"""Per-tier thresholds of a cascade, tuned on the calibration split with a guarantee (`certification`).

A cascade starts every sample on one tier; in `continue` mode a sample that is not sure enough at a tier's
cap goes up with its hidden state, and the cloud answers what reaches it with the whole model. The family of
settings tested is fixed before any sample is seen: every tier below the cloud answers when its confidence
reaches λ, for λ from the grid's top (answer only when all but certain) down to 1 / classes (answer
everything). Lower λ is cheaper and riskier; the tuning takes the lowest λ the fixed-sequence test passes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dimee.method import certification
from dimee.method.certification import Budget, Guarantee
from dimee.method.thresholds import TierThresholds
from dimee.method.tiers import CostModel, TierPlan

# Confidences crowd near 1, so the grid is dense there; None means "never exit early".
_HIGH = (0.9, 0.95, 0.97, 0.98, 0.99, 0.995, 0.998, 0.999)


# λ steps of (1 - 1/C) / 200 (0.0025 with two classes): fixed-sequence testing pays nothing for a finer grid (no
# multiplicity correction), and it stops closer to where the budget runs out (21 steps stopped 0.025 short).
GRID_POINTS = 201


def threshold_grid(num_labels: int, points: int = GRID_POINTS) -> list[float | None]:
    values = np.unique(np.round(np.concatenate([np.linspace(1.0 / num_labels, 1.0, points), _HIGH]), 6))
    return [*values.tolist(), None]


def family(num_labels: int) -> list[float]:
    """The λ tested, safest first."""
    return sorted((g for g in threshold_grid(num_labels) if g is not None), reverse=True)


@dataclass
class Recorded:
    """What the search looks at: every exit's prediction and confidence on the calibration split."""

    conf: np.ndarray  # (N, L)
    correct: np.ndarray  # (N, L) the exit's argmax equals the label
    labels_count: int
    num_labels: int
    agree: np.ndarray  # (N, L) the exit's argmax equals the full model's (the last exit's)
    hidden_kb: np.ndarray | None = None  # (N,) what a `continue` escalation carries, for its cost

    @classmethod
    def of(cls, probs: np.ndarray, labels: np.ndarray, hidden_kb: np.ndarray | None = None) -> Recorded:
        said = probs.argmax(-1)
        return cls(probs.max(-1), said == np.asarray(labels)[:, None], len(labels), probs.shape[-1],
                   said == said[:, -1:], hidden_kb)


@dataclass
class Outcome:
    """One setting's per-sample outcome over the whole cascade."""

    correct: np.ndarray  # (N,) bool
    cost: np.ndarray  # (N,)
    below: np.ndarray  # (N,) bool: answered by a tier below the cloud
    agrees: np.ndarray  # (N,) bool: the answer is the full model's

    def disagreement_below(self) -> float:
        """The share of the answers below the cloud that disagree with the full model: what the online audit
        measures."""
        return float((self.below & ~self.agrees).sum() / self.below.sum()) if self.below.any() else 0.0


def _serve(data: Recorded, plan: TierPlan, cost: CostModel, start: int, answer_at: float | None) -> Outcome:
    """Every sample from tier `start` up: a tier below the cloud answers at its first layer (from where the
    sample entered to its cap) with confidence ≥ `answer_at`, else the sample goes up; the cloud runs to L."""
    rows, layer_no = np.arange(data.labels_count), np.arange(1, data.conf.shape[1] + 1)
    pending = np.ones(data.labels_count, dtype=bool)
    correct, total = np.zeros(data.labels_count, dtype=bool), np.zeros(data.labels_count)
    below, agrees = np.zeros(data.labels_count, dtype=bool), np.zeros(data.labels_count, dtype=bool)
    for index in range(start, len(plan)):
        tier, cap = plan[index]
        begin = 0 if index == start else plan[index - 1][1]
        sure = (data.conf >= (np.inf if index == len(plan) - 1 or answer_at is None else answer_at))
        passes = sure & (layer_no > begin) & (layer_no <= cap)
        exit_at = np.where(passes.any(1), passes.argmax(1) + 1, cap)
        answered = passes.any(1) | (index == len(plan) - 1)
        here = np.asarray(cost.run(tier, exit_at - begin), dtype=np.float64)
        if begin > 0 and data.hidden_kb is not None:  # entered by escalation: the hidden state came along
            here = here + np.asarray(cost.carry(data.hidden_kb), dtype=np.float64)
        total += np.where(pending, here, 0.0)
        correct |= pending & answered & data.correct[rows, exit_at - 1]
        agrees |= pending & answered & data.agree[rows, exit_at - 1]
        below |= pending & answered & (index < len(plan) - 1)
        pending &= ~answered
    return Outcome(correct, total, below, agrees)


@dataclass(frozen=True)
class Tuned:
    thresholds: TierThresholds
    accuracy: float  # on the calibration split
    cost: float
    guarantee: Guarantee  # its loss against the full model, as the calibration split shows it
    disagreement_below: float  # among its answers below the cloud, on calibration: the audit's target


def _thresholds(plan: TierPlan, start: int, answer_at: float | None) -> TierThresholds:
    exits = [answer_at if start <= i < len(plan) - 1 else None for i in range(len(plan))]
    return TierThresholds(exit=exits, keep=[None] * len(plan))


def tune_cascade(data: Recorded, plan: TierPlan, cost: CostModel, start: int, budget: Budget) -> Tuned:
    """The cheapest setting of the family for a `continue` cascade from tier `start` whose loss against the full
    model is shown within the budget; if none is, every sample escalates to the cloud, which answers as the full
    model does."""
    full = data.correct[:, -1]
    outcomes = [_serve(data, plan, cost, start, answer_at) for answer_at in family(data.num_labels)]
    losses = [int((full & ~o.correct).sum()) for o in outcomes]
    passed = certification.fixed_sequence(losses, data.labels_count, budget)
    if passed is None:  # nothing shown: no early answer anywhere, the cloud answers everything
        answer_at, outcome = None, _serve(data, plan, cost, start, None)
        guarantee = Guarantee.of(0, data.labels_count, budget, certified=True, exact=True)
    else:
        answer_at, outcome = family(data.num_labels)[passed], outcomes[passed]
        guarantee = Guarantee.of(losses[passed], data.labels_count, budget, certified=True)
    return Tuned(_thresholds(plan, start, answer_at), float(outcome.correct.mean()), float(outcome.cost.mean()),
                 guarantee, outcome.disagreement_below())
