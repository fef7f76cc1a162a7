"""Serving with escalation, on recorded exit probabilities: a tier whose sample has not reached α by its cap
passes it to the next tier up instead of answering at the cap.

Modes: `off` (the paper: answer at the cap), `recompute` (the next tier runs from layer 1), `continue` (the
hidden state travels with the sample; the next tier runs from the previous cap). Costs of every hop add up:
processing per layer run on each tier, and the offload into each tier entered (mobile 0, edge o_e, cloud
o_c + κ, whether the sample comes from the mobile or from the edge).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import get_args

import numpy as np

from dimee.common.choices import EscalationMode
from dimee.method.calibration import Calibration
from dimee.method.thresholds import TierThresholds
from dimee.method.tiers import TierPlan

MODES: tuple[EscalationMode, ...] = get_args(EscalationMode)


@dataclass
class Journey:
    pred: np.ndarray  # (N,)
    exit_layer: np.ndarray  # layer whose head answered
    cost: np.ndarray  # total over hops
    final: np.ndarray  # index into the plan of the tier that answered
    hops: np.ndarray  # tiers visited (1 = no escalation)
    layers_run: np.ndarray  # all layers computed on all tiers
    path_bits: np.ndarray  # bit t set: tier t of the plan was visited

    def paths(self, plan: TierPlan) -> list[list[str]]:
        return plan.paths(self.path_bits)


def serve_escalating(probs: np.ndarray, start: np.ndarray, cal: Calibration, mode: EscalationMode = "continue",
                     thresholds: TierThresholds | None = None) -> Journey:
    """Serve each sample from its start pool under `cal`'s plan and costs, escalating per `mode`; exits at
    `thresholds` (default: α* on every tier), the same rule a tier worker applies."""
    if mode not in MODES:
        raise ValueError(f"escalation mode must be one of {MODES}, got {mode!r}")
    plan, cost = cal.plan, cal.cost_model
    exit_at_conf, escalate_below = (thresholds or TierThresholds.uniform(cal.alpha, len(plan))).arrays()
    n, num_layers = probs.shape[0], probs.shape[1]
    conf = probs.max(-1)
    layer_no = np.arange(1, num_layers + 1)
    current, begin = start.astype(np.int64).copy(), np.zeros(n, dtype=np.int64)
    active = np.ones(n, dtype=bool)
    pred = np.full(n, -1, dtype=np.int64)
    exit_layer, final = np.zeros(n, dtype=np.int64), np.zeros(n, dtype=np.int64)
    total, layers_run = np.zeros(n), np.zeros(n, dtype=np.int64)
    hops, path_bits = np.zeros(n, dtype=np.int64), np.zeros(n, dtype=np.int64)
    for t, (tier, cap) in enumerate(plan):  # escalation only moves up, so one pass over the tiers suffices
        here = np.flatnonzero(active & (current == t))
        if len(here) == 0:
            continue
        b = begin[here]
        window = (layer_no[None, :] > b[:, None]) & (layer_no[None, :] <= cap)
        passes = (conf[here] >= exit_at_conf[t]) & window
        exit_at = np.where(passes.any(1), passes.argmax(1) + 1, cap)
        sure = conf[here, exit_at - 1] >= escalate_below[t]
        run = exit_at - b
        total[here] += cost.run(tier, run)
        layers_run[here] += run
        hops[here] += 1
        path_bits[here] |= 1 << t
        answer = sure | (t == len(plan) - 1) | (mode == "off")
        done = here[answer]
        exit_layer[done] = exit_at[answer]
        pred[done] = probs[done, exit_at[answer] - 1].argmax(-1)
        final[done] = t
        active[done] = False
        up = here[~answer]
        current[up] = t + 1
        begin[up] = 0 if mode == "recompute" else cap
    return Journey(pred, exit_layer, total, final, hops, layers_run, path_bits)


def with_carry(journey: Journey, hidden_kb: np.ndarray, cal: Calibration, mode: EscalationMode) -> Journey:
    """The journey's costs with the hidden state each `continue` escalation carried (o_hidden_per_kb per KB;
    0 by default): every hop after the first brought the sample's hidden state along."""
    if mode != "continue" or not cal.cost_model.o_hidden_per_kb:
        return journey
    carried = cal.cost_model.carry(hidden_kb) * (journey.hops - 1)
    return replace(journey, cost=journey.cost + carried)
