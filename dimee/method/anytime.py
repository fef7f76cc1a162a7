"""Anytime-valid certificates from a stream of audits: a setting's loss rate is shown below a budget as soon as
the evidence allows, at whatever moment one looks, without a correction for how often one looked.

The test is a bet against the null "this setting's loss rate is at least the budget m" (Waudby-Smith & Ramdas
2023, "Estimating means of bounded random variables by betting"). Each observation X in [0, 1] (a loss) pays 1 +
b·(m − X) on a stake b in [0, 1/(1 − m)) chosen from the past alone (so a loss never takes it all). Under the
null the capital is a nonnegative supermartingale, so by Ville's inequality it ever reaches 1/δ with probability
at most δ: once it does, the loss rate is below m with probability at least 1 − δ, at that moment and every
later one.

An observation may be larger than the loss it stands for (a disagreement with the full model where no label
came back: the setting loses only where it disagrees, so X ≥ loss): the capital then only grows slower than the
loss's own, and the certificate stays valid. So labelled and label-free evidence may be mixed.

Several settings, ordered safest first before any evidence is seen (a tuned cascade's λ from the top), are
tested in that fixed sequence: the certified ones are the longest prefix whose bets have each reached 1/δ, and
all of them hold together with probability at least 1 − δ (the first setting over the budget would have to be
certified first).

The reverse bet ("the loss rate is at most m") watches the served setting: when its capital reaches 1/δ the
setting is over the budget (after a shift), it is revoked and its evidence restarts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

# Of the largest stake a bet allows: WSR's truncation, so one loss costs at most 1 − MAX_STAKE of the capital.
# 0.6 is near the growth-optimal stake for loss rates of a third to a half of a 0.5-point budget.
MAX_STAKE = 0.6


@dataclass
class Bets:
    """One bet per setting, all on the same observations, that its loss rate is below (`below=True`) or above
    `budget`; the settings are ordered safest first."""

    size: int
    budget: float
    risk: float
    below: bool = True
    seen: int = 0
    capital: np.ndarray = field(init=False)
    reached: np.ndarray = field(init=False)  # the capital has reached 1/risk: the claim holds from then on
    total: np.ndarray = field(init=False)  # Σ X
    spread: np.ndarray = field(init=False)  # Σ (X − running mean)², started at 1/4 as WSR's plug-in variance is

    def __post_init__(self) -> None:
        self.capital, self.reached = np.ones(self.size), np.zeros(self.size, dtype=bool)
        self.total, self.spread = np.zeros(self.size), np.full(self.size, 0.25)

    def stakes(self) -> np.ndarray:
        """WSR's predictable plug-in stakes: sized by the variance seen so far, capped at MAX_STAKE of the most a
        bet allows (1/(1 − m) betting below, where X = 1 loses (1 − m) per unit staked; 1/m above)."""
        t = self.seen + 1
        size = np.sqrt(2 * math.log(1 / self.risk) / ((self.spread / t) * t * math.log(1 + t)))
        limit = 1 / (1 - self.budget) if self.below else 1 / self.budget
        return np.minimum(size, MAX_STAKE * limit)

    def observe(self, losses: np.ndarray) -> None:
        """One observation: every setting's loss on the same sample (or an upper bound on it), each in [0, 1]."""
        x = np.asarray(losses, dtype=np.float64)
        gain = (self.budget - x) if self.below else (x - self.budget)
        self.capital *= 1 + self.stakes() * gain
        mean_before = (0.5 + self.total) / (self.seen + 1)
        self.seen, self.total = self.seen + 1, self.total + x
        self.spread += (x - mean_before) ** 2
        self.reached |= self.capital >= 1 / self.risk

    def certified(self) -> int:
        """How many of the first settings are shown (the fixed sequence stops at the first not shown)."""
        return int(np.argmin(self.reached)) if not self.reached.all() else self.size
