"""The live threshold controller: an adaptive-conformal update (Gibbs & Candès 2021) of one offset on the exit
thresholds of every tier below the cloud, from the online audit's outcomes.

After each audited answer, offset ← offset + η·(disagreed − target): a disagreement with the full model raises the
thresholds (fewer early answers, more escalations to the cloud), an agreement lowers them by η·target. Over a
stream the disagreement share among audited answers is driven to `target`, the share the calibration split showed
for the certified setting. The offset never goes below 0 (never looser than the setting the guarantee was shown
for) nor above `ceiling` (every sample escalates: the cloud answers as the full model).

It also moves at most `max_move` within one window of `window` audits (audits 1..W, W+1..2W, … by version): from
the offset the window began at (its anchor), whatever the audits say. A burst of disagreements (a drift, or audits
that should not have counted) then takes several windows to reach the ceiling, and the controller says so on the
way (routers/controller.py).

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
    ceiling: float = Field(CEILING, gt=0.0, le=CEILING)
    window: int = Field(100, ge=1, description="audits per window: the offset moves at most max_move within one")
    max_move: float = Field(0.25, gt=0.0, le=CEILING, description="how far the offset may move within one window "
                            "of audits, from where the window began")


class Control(BaseModel):
    """The live offset and how many audits moved it (its version), as stamped on routed messages: a finite number
    in [0, CEILING] and a non-negative integer, strictly (no string, no boolean, no other key)."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)
    offset: float = Field(0.0, ge=0.0, le=CEILING, allow_inf_nan=False)
    version: int = Field(0, ge=0)


class ControlState(BaseModel):
    """What the state store keeps: the live control and the offset its window of audits began at."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)
    control: Control = Control()
    anchor: float = Field(0.0, ge=0.0, le=CEILING, allow_inf_nan=False)


def next_offset(offset: float, disagreed: bool, rule: ControlRule, anchor: float | None = None) -> float:
    """The offset after one audit; within max_move of `anchor` (where the window began) when given."""
    low, high = 0.0, rule.ceiling
    if anchor is not None:
        low, high = max(low, anchor - rule.max_move), min(high, anchor + rule.max_move)
    return min(high, max(low, offset + rule.step * (float(disagreed) - rule.target)))


def step(state: ControlState, disagreed: bool, rule: ControlRule) -> ControlState:
    """One audit applied: a new window begins at every multiple of `window` audits."""
    control = state.control
    anchor = control.offset if control.version % rule.window == 0 else state.anchor
    offset = next_offset(control.offset, disagreed, rule, anchor)
    return ControlState(control=Control(offset=offset, version=control.version + 1), anchor=anchor)


def replay(outcomes: Iterable[bool], rule: ControlRule, start: ControlState | Control | None = None) -> list[Control]:
    """The controls after each outcome (True: the audited answer disagreed with the full model), in order. From a
    bare `Control`, its offset is taken as its window's anchor (exact at a window's start; the store's
    `control_state()` says where a window in progress began)."""
    if isinstance(start, Control):
        start = ControlState(control=start, anchor=start.offset)
    state, out = start or ControlState(), []
    for disagreed in outcomes:
        state = step(state, disagreed, rule)
        out.append(state.control)
    return out


def offset_thresholds(exit_at: float, escalate_below: float, offset: float) -> tuple[float, float]:
    """A tier's (exit, escalate-below) thresholds under the live offset."""
    return exit_at + offset, escalate_below + offset
