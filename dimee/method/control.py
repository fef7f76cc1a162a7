"""The live threshold controller: an adaptive-conformal update (Gibbs & Candès 2021) of one offset on the exit
thresholds of every tier below the cloud, from the online audit's outcomes.

After each audited answer, offset ← offset + η·(disagreed − target): a disagreement with the full model raises the
thresholds (fewer early answers, more escalations to the cloud), an agreement lowers them by η·target. Over a
stream the disagreement share among audited answers is driven to `target`, the share the calibration split showed
for the certified setting. The offset never goes below 0 (never looser than the setting the guarantee was shown
for) nor above `ceiling` (every sample escalates: the cloud answers as the full model).

This is the one definition: the controller stage applies it to the audit stream and `replay` to a recorded
sequence of outcomes, so both give the same thresholds over time.
"""

from __future__ import annotations

from collections.abc import Iterable

from pydantic import BaseModel, ConfigDict, Field

CEILING = 1.0  # confidences are at most 1: an offset of 1 on any threshold ≥ 0 stops every early answer


class ControlRule(BaseModel):
    model_config = ConfigDict(frozen=True)
    target: float = Field(ge=0.0, le=1.0, description="the disagreement share among audited answers aimed at")
    step: float = Field(0.02, gt=0.0, description="η: how far one audit moves the offset")
    ceiling: float = CEILING


class Control(BaseModel):
    """The live offset and how many audits moved it (its version), as stamped on routed messages."""

    model_config = ConfigDict(frozen=True)
    offset: float = Field(0.0, ge=0.0)
    version: int = Field(0, ge=0)


def next_offset(offset: float, disagreed: bool, rule: ControlRule) -> float:
    return min(rule.ceiling, max(0.0, offset + rule.step * (float(disagreed) - rule.target)))


def replay(outcomes: Iterable[bool], rule: ControlRule, start: Control | None = None) -> list[Control]:
    """The controls after each outcome (True: the audited answer disagreed with the full model), in order."""
    control, out = start or Control(), []
    for disagreed in outcomes:
        control = Control(offset=next_offset(control.offset, disagreed, rule), version=control.version + 1)
        out.append(control)
    return out


def offset_thresholds(exit_at: float, escalate_below: float, offset: float) -> tuple[float, float]:
    """A tier's (exit, escalate-below) thresholds under the live offset."""
    return exit_at + offset, escalate_below + offset
