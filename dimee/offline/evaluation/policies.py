"""Every named routing policy (the paper's DIMEE-F/D and single tiers, escalation, cascades with α* or tuned
thresholds, the learned router, feedback adaptation) as a row of the offline evaluator, served by the same
definition (`RoutingPolicy.served_thresholds`, its router, its escalation mode) the workers serve."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np

from dimee.common.choices import EscalationMode
from dimee.method import arithmetic
from dimee.method.calibration import Calibration
from dimee.method.certification import Guarantee
from dimee.method.escalation import Journey, serve_escalating, with_carry
from dimee.method.exits import ExitRecords
from dimee.method.learned_router import LearnedRouter
from dimee.method.routing_policy import POLICIES, RoutingPolicy
from dimee.offline.evaluation.baselines import MethodResult


@dataclass
class PolicyInputs:
    """What a policy may look at: recorded exits, router-side features, the learned router's probabilities."""

    records: ExitRecords
    features: np.ndarray | None = None
    learned_proba: np.ndarray | None = None


def journey_result(name: str, journey: Journey, cal: Calibration, routed: np.ndarray | None = None) -> MethodResult:
    return MethodResult(name, journey.pred, cal.plan.tier_indices(journey.final), journey.cost, routed,
                        hops=journey.hops, exit_layer=journey.exit_layer)


def _serve(name: str, data: PolicyInputs, cal: Calibration, start: np.ndarray,
           mode: EscalationMode) -> MethodResult:
    journey = serve_escalating(data.records.probs, start, cal, mode)
    return journey_result(name, journey, cal, start)


def dimee_start(data: PolicyInputs, cal: Calibration, adaptive: bool) -> np.ndarray:
    return arithmetic.route(data.records.embeddings, cal.centroid_arrays(), cal.pool_sizes, cal.distance, adaptive)


def feedback_start(data: PolicyInputs, cal: Calibration) -> np.ndarray:
    observed = arithmetic.true_pools(data.records.probs, cal.alpha, cal.plan)
    start = arithmetic.Centroids(cal.centroid_arrays(), cal.pool_sizes, cal.distance)
    return arithmetic.route_with_feedback(data.records.embeddings, start, observed)


PolicyFn = Callable[[PolicyInputs, Calibration], MethodResult]


def start_tiers(policy: RoutingPolicy, data: PolicyInputs, cal: Calibration,
                learned: LearnedRouter | None) -> np.ndarray:
    """The pool each sample starts in under `policy`'s router, before any layer runs."""
    if policy.router == "centroid":
        return feedback_start(data, cal) if policy.feedback else dimee_start(data, cal, policy.adaptive)
    if policy.router == "learned":
        assert learned is not None, "a learned policy needs a fitted learned router"
        proba = data.learned_proba if data.learned_proba is not None else learned.predict_proba(data.features)
        return learned.decide(proba)
    return np.full(len(data.records.labels), cal.plan.index(policy.router), dtype=np.int64)


def offline_policy(policy: RoutingPolicy, learned: LearnedRouter | None = None) -> PolicyFn:
    """A named policy served on recorded exits: its router's start tiers, then its escalation mode."""
    routed = policy.router in ("centroid", "learned")  # a router chose the start tier (fixed tiers do not)

    def run(data: PolicyInputs, cal: Calibration) -> MethodResult:
        start = start_tiers(policy, data, cal, learned)
        journey = serve_escalating(data.records.probs, start, cal, policy.escalation, policy.served_thresholds(cal))
        journey = with_carry(journey, data.records.hidden_kb(), cal, policy.escalation)
        result = journey_result(policy.name, journey, cal, start)
        return result if routed else replace(result, routed_pool=None)

    return run


def policy_table(learned: LearnedRouter | None) -> dict[str, PolicyFn]:
    """Every named policy of `routing_policy.POLICIES`, served offline by the same definition the workers
    serve, plus the Oracle+esc ceiling; the learned ones only when a learned router is given."""
    table = {name: offline_policy(p) for name, p in POLICIES.items() if p.router != "learned"}
    table["Oracle+esc"] = lambda d, c: _serve("Oracle+esc", d, c,
                                               arithmetic.true_pools(d.records.probs, c.alpha, c.plan), "continue")
    if learned is not None:
        table |= {name: offline_policy(p, learned) for name, p in POLICIES.items() if p.router == "learned"}
    return table


@dataclass(frozen=True)
class DefaultChoice:
    name: str
    guarantee: Guarantee


def choose_default(results: dict[str, MethodResult], cal: Calibration) -> DefaultChoice:
    """The cheapest policy (mean cost on the calibration split) whose loss against the full model is shown within
    the budget: a tuned cascade that passed its test, or Cloud-only, which answers as the full model."""
    shown = {name: g for name in results if (g := POLICIES[name].guarantee(cal)) is not None and g.certified}
    name = min(shown, key=lambda n: results[n].mean_cost())
    return DefaultChoice(name, shown[name])
