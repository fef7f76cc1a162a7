"""Routing policies beyond the paper's (issue: routing that finds difficulty): escalation, the sequential
cascade, the learned cost-aware router and feedback adaptation, as rows of the offline evaluator."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from dimee import method
from dimee.calibration import Calibration
from dimee.choices import EscalationMode
from dimee.escalation import Journey, serve_escalating
from dimee.evaluation.baselines import MethodResult
from dimee.exits import ExitRecords
from dimee.learned_router import LearnedRouter


@dataclass
class PolicyInputs:
    """What a policy may look at: recorded exits, router-side features, the learned router's probabilities."""

    records: ExitRecords
    features: np.ndarray | None = None
    learned_proba: np.ndarray | None = None


def journey_result(name: str, journey: Journey, cal: Calibration, routed: np.ndarray | None = None) -> MethodResult:
    return MethodResult(name, journey.pred, cal.tier_plan().tier_indices(journey.final), journey.cost, routed,
                        hops=journey.hops)


def _serve(name: str, data: PolicyInputs, cal: Calibration, start: np.ndarray, mode: EscalationMode,  # noqa: PLR0913
           routed: bool = True) -> MethodResult:
    journey = serve_escalating(data.records.probs, start, cal.tier_plan(), cal.alpha, cal.cost_model, mode)
    return journey_result(name, journey, cal, start if routed else None)


def dimee_start(data: PolicyInputs, cal: Calibration, adaptive: bool) -> np.ndarray:
    return method.route(data.records.embeddings, cal.centroid_arrays(), cal.pool_sizes, cal.distance, adaptive)


def feedback_start(data: PolicyInputs, cal: Calibration, update: str = "mean") -> np.ndarray:
    observed = method.true_pools(data.records.probs, cal.alpha, cal.tier_plan())
    return method.route_with_feedback(data.records.embeddings, cal.centroid_arrays(), cal.pool_sizes, cal.distance,
                                      observed, update=update)  # type: ignore[arg-type]


def policy_table(learned: LearnedRouter | None) -> dict[str, Callable[[PolicyInputs, Calibration], MethodResult]]:
    """Every policy of this issue by name; each serves a stream of recorded exits."""
    table: dict[str, Callable[[PolicyInputs, Calibration], MethodResult]] = {
        "Cascade": lambda d, c: _serve("Cascade", d, c, np.zeros(len(d.records.labels), dtype=np.int64),
                                       "continue", routed=False),
        "Edge+escalation": lambda d, c: _serve("Edge+escalation", d, c, np.ones(len(d.records.labels), dtype=np.int64),
                                               "continue", routed=False),
        "DIMEE-F+esc": lambda d, c: _serve("DIMEE-F+esc", d, c, dimee_start(d, c, False), "continue"),
        "DIMEE-D+esc": lambda d, c: _serve("DIMEE-D+esc", d, c, dimee_start(d, c, True), "continue"),
        "Feedback-adaptive": lambda d, c: _serve("Feedback-adaptive", d, c, feedback_start(d, c), "off"),
        "Feedback-adaptive+esc": lambda d, c: _serve("Feedback-adaptive+esc", d, c, feedback_start(d, c), "continue"),
        "Oracle+esc": lambda d, c: _serve("Oracle+esc", d, c, method.true_pools(d.records.probs, c.alpha,
                                                                                 c.tier_plan()), "continue"),
    }
    if learned is not None:
        def learned_policy(name: str, mode: EscalationMode):
            def run(d: PolicyInputs, c: Calibration) -> MethodResult:
                proba = d.learned_proba if d.learned_proba is not None else learned.predict_proba(d.features)
                return _serve(name, d, c, learned.decide(proba), mode)
            return run
        table["Learned"] = learned_policy("Learned", "off")
        table["Learned+esc"] = learned_policy("Learned+esc", "continue")
    return table


def choose_default(rows: dict[str, dict], full_accuracy: float, max_drop: float) -> str:
    """The cheapest policy whose calibration accuracy is within max_drop points of the full model; if none
    qualifies, the most accurate."""
    allowed = {n: r for n, r in rows.items() if r["accuracy"] >= full_accuracy - max_drop / 100 - 1e-12}
    if not allowed:
        return max(rows, key=lambda n: rows[n]["accuracy"])
    return min(allowed, key=lambda n: (allowed[n]["cost"], -allowed[n]["accuracy"]))
