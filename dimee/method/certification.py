"""A budget shown with a stated probability (Learn-then-Test, Angelopoulos et al. 2021), not a point estimate.

The quantity bounded is a setting's *loss* against the full model: the share of samples the full model answers
right and the setting answers wrong. A setting's accuracy drop (losses minus gains) is never above it, so an
upper confidence bound on the loss bounds the drop. The bound is exact: one-sided Clopper-Pearson on the count.

Picking the cheapest of many settings by their calibration accuracy makes a lucky one look safe. Instead the
settings of a tuned cascade form one family ordered before any sample is seen, from the safest (answer only
when sure) to the cheapest, and are tested in that order (fixed-sequence testing): the search stops at the
first whose bound is over the budget. Every setting passed is then within the budget with probability at least
1 - δ, all of them together, without a correction for how many were tested.

The two tuned cascades (from the mobile and from the edge) are one family, tested once at δ: at every λ they
give every sample the same answer (each answers at the first exit up to the edge's cap whose confidence reaches
λ, else the cloud answers at the last layer; they differ only in what the layers cost, where they run), so a
loss count, its bound and the test's verdict are the same for both. Testing each at δ / 2 tested one thing
twice and cost samples: a 0.5-point budget then needed 736 calibration samples, at δ it needs 598.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from pydantic import BaseModel, ConfigDict

RISK = 0.05  # δ: a budget counts as shown when its bound holds with probability 1 - δ
# Distinct families tested, each at δ / FAMILIES (Bonferroni): the two tuned cascades answer alike, so one.
FAMILIES = 1


def level(risk: float = RISK) -> float:
    """The risk each family is tested at."""
    return risk / FAMILIES


def loss_upper_bound(losses: int, samples: int, risk: float) -> float:
    """Exact one-sided (Clopper-Pearson) upper bound on a rate seen `losses` times in `samples`."""
    if samples <= 0 or losses >= samples:
        return 1.0
    from scipy.stats import beta  # here, not at import: scipy.stats costs every role ~0.6 s to start

    return float(beta.ppf(1 - risk, losses + 1, samples - losses))


def rate_interval(seen: int, samples: int, confidence: float = 0.95) -> tuple[float, float]:
    """Exact two-sided (Clopper-Pearson) interval on a rate seen `seen` times in `samples`."""
    if samples <= 0:
        return 0.0, 1.0
    from scipy.stats import beta

    tail = (1 - confidence) / 2
    low = 0.0 if seen == 0 else float(beta.ppf(tail, seen, samples - seen + 1))
    high = 1.0 if seen >= samples else float(beta.ppf(1 - tail, seen + 1, samples - seen))
    return low, high


def samples_to_show(budget: float, risk: float) -> int:
    """The fewest samples whose bound on a setting that loses none is within `budget` (a share)."""
    return math.ceil(math.log(risk) / math.log(1 - budget))


@dataclass(frozen=True)
class Budget:
    """What must be shown: a loss against the full model within `points` accuracy points, at risk `risk`."""

    points: float
    risk: float = field(default_factory=level)

    @property
    def share(self) -> float:
        return self.points / 100


class Guarantee(BaseModel):
    """What the calibration split shows: the loss against the full model is at most `loss_bound` (a share) with
    probability 1 - `risk`."""

    model_config = ConfigDict(frozen=True)
    losses: int
    samples: int
    risk: float
    loss_bound: float
    budget: float  # the budget asked, a share
    certified: bool  # passed the fixed-sequence test, or loses nothing by construction

    @classmethod
    def of(cls, losses: int, samples: int, budget: Budget, certified: bool, exact: bool = False) -> Guarantee:
        """`exact`: the setting answers as the full model does by construction, so it loses nothing, surely."""
        bound = 0.0 if exact else loss_upper_bound(losses, samples, budget.risk)
        return cls(losses=losses, samples=samples, risk=budget.risk, loss_bound=bound, budget=budget.share,
                   certified=certified)

    def describe(self) -> str:
        shown = "shown" if self.certified else "not shown"
        return (f"loss against the full model ≤ {100 * self.loss_bound:.2f} pt at {100 * (1 - self.risk):.1f}% "
                f"confidence ({self.losses} of {self.samples} calibration samples lost); "
                f"{100 * self.budget:g}-pt budget {shown}")


def fixed_sequence(losses: Sequence[int], samples: int, budget: Budget) -> int | None:
    """Test settings in their given order (`losses`: each one's count on `samples`) and stop at the first whose
    bound is over the budget: the index of the last one passed, None if the first failed."""
    passed = None
    for i, lost in enumerate(losses):
        if loss_upper_bound(int(lost), samples, budget.risk) > budget.share:
            break
        passed = i
    return passed
