"""Per-tier exit thresholds: what a tier worker and the offline evaluator both read to decide, after each
layer, whether a sample leaves, and at the tier's cap whether it is answered there or escalated.

A policy serves at α* on every tier (the paper), runs every tier to its cap (the full model: Cloud-only),
or uses thresholds tuned per tier on the calibration split (`dimee.method.cascade_tuning`).
"""

from __future__ import annotations

import math

import numpy as np
from pydantic import BaseModel, Field


class TierThresholds(BaseModel):
    """One entry per tier of the plan, in plan order."""

    exit: list[float | None] = Field(description="leave once confidence ≥ this; null: run to the tier's cap")
    keep: list[float | None] = Field(description="at the cap, answer here (instead of escalating) when "
                                                 "confidence ≥ this; null: only when the exit threshold is met")

    @classmethod
    def uniform(cls, alpha: float, tiers: int) -> TierThresholds:
        """α on every tier: the paper's serving rule."""
        return cls(exit=[alpha] * tiers, keep=[None] * tiers)

    @classmethod
    def full_model(cls, tiers: int) -> TierThresholds:
        """No early exit anywhere: every tier runs to its cap."""
        return cls(exit=[None] * tiers, keep=[None] * tiers)

    def exit_at(self, tier: int) -> float:
        value = self.exit[tier]
        return math.inf if value is None else value

    def escalate_below(self, tier: int) -> float:
        """A sample leaving `tier` with confidence below this escalates (where the policy escalates)."""
        keep = self.keep[tier]
        return self.exit_at(tier) if keep is None else min(keep, self.exit_at(tier))

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """(exit, escalate_below) per tier as float arrays, inf for 'never'."""
        tiers = range(len(self.exit))
        return (np.array([self.exit_at(t) for t in tiers]), np.array([self.escalate_below(t) for t in tiers]))
