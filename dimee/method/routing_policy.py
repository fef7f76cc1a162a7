"""Named routing policies as deployable settings of the router and the workers. `dimee study` writes the
one measured best on the calibration split to WORKDIR/policy.json; roles use it unless told otherwise."""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from dimee.common.choices import EscalationMode, RouterKind, ThresholdKind
from dimee.common.errors import DimeeError
from dimee.common.workdir import Workdir
from dimee.method.calibration import Calibration
from dimee.method.certification import Budget, Guarantee
from dimee.method.thresholds import TierThresholds


class RoutingPolicy(BaseModel):
    model_config = ConfigDict(frozen=True)  # hashable: workers group a batch's messages by the stamped policy
    name: str
    router: RouterKind
    adaptive: bool = False  # DIMEE-D: move the routed pool's centroid
    feedback: bool = False  # move the observed pool's centroid (reported by workers)
    escalation: EscalationMode = "off"
    thresholds: ThresholdKind = "calibrated"  # α* on every tier; full-model: no early exit; tuned: per tier

    @property
    def answers_as_full_model(self) -> bool:
        """Every sample runs the whole model on the cloud: no loss against the full model, by construction."""
        return self.router == "cloud" and self.thresholds == "full-model"

    def guarantee(self, cal: Calibration) -> Guarantee | None:
        """What the calibration split shows of this policy's loss against the full model: certified for a tuned
        cascade that passed its test, exact for the full model, nothing for the rest."""
        if self.answers_as_full_model:
            return Guarantee.of(0, sum(cal.pool_sizes), Budget(cal.config().max_drop), certified=True, exact=True)
        if self.thresholds == "tuned":
            return cal.cascade_guarantees.get(self.router)
        return None

    def served_thresholds(self, cal: Calibration) -> TierThresholds:
        """The exit rule of every tier under this policy: the one definition the workers and the offline
        evaluator both serve."""
        tiers = len(cal.plan)
        if self.thresholds == "full-model":
            return TierThresholds.full_model(tiers)
        if self.thresholds == "tuned":
            if self.router not in cal.cascades:
                raise DimeeError(f"{self.name} needs thresholds tuned from the {self.router} tier: calibrate again "
                                 "(`dimee calibrate`) with this version")
            return cal.cascades[self.router]
        return TierThresholds.uniform(cal.alpha, tiers)


def _p(name: str, router: RouterKind, **kw) -> RoutingPolicy:
    return RoutingPolicy(name=name, router=router, **kw)


POLICIES: dict[str, RoutingPolicy] = {p.name: p for p in (
    _p("Cascade", "mobile", escalation="continue"),
    _p("Edge+escalation", "edge", escalation="continue"),
    _p("Tuned-cascade", "mobile", escalation="continue", thresholds="tuned"),
    _p("Tuned-edge-cascade", "edge", escalation="continue", thresholds="tuned"),
    _p("DIMEE-F", "centroid"),
    _p("DIMEE-D", "centroid", adaptive=True),
    _p("DIMEE-F+esc", "centroid", escalation="continue"),
    _p("DIMEE-D+esc", "centroid", adaptive=True, escalation="continue"),
    _p("Feedback-adaptive", "centroid", feedback=True),
    _p("Feedback-adaptive+esc", "centroid", feedback=True, escalation="continue"),
    _p("Learned", "learned"),
    _p("Learned+esc", "learned", escalation="continue"),
    _p("Mobile-only", "mobile"),
    _p("Edge-only", "edge"),
    _p("Cloud-only", "cloud", thresholds="full-model"),  # the full model, as the paper's baseline row
)}
PAPER = "DIMEE-F"


def get(name: str) -> RoutingPolicy:
    if name not in POLICIES:
        raise DimeeError(f"unknown policy {name!r}: choose one of {', '.join(POLICIES)} (or auto)")
    return POLICIES[name]


def save_default(workdir: Workdir | Path, name: str, reason: str, guarantee: Guarantee | None = None) -> None:
    """policy.json: the policy, why it was chosen, and what the calibration split shows of its loss."""
    shown = None if guarantee is None else guarantee.model_dump()
    Workdir.of(workdir).policy.write_text(json.dumps({**get(name).model_dump(), "chosen_because": reason,
                                                      "guarantee": shown}, indent=2))


def resolve(workdir: Workdir | Path, name: str = "auto") -> RoutingPolicy:
    """`auto`: the default measured on calibration (WORKDIR/policy.json), else the paper's DIMEE-F."""
    if name != "auto":
        return get(name)
    path = Workdir.of(workdir).policy
    return get(json.loads(path.read_text())["name"]) if path.exists() else get(PAPER)
