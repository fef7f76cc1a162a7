"""The live threshold controller: consumes the online audit (`dimee.streaming.audit`) and moves the offset on the
exit thresholds of the tiers below the cloud (`dimee.method.control`) in the pipeline's state, beside the centroids.
Routers stamp the offset on every routed message; workers serve it. So every instance serves one offset, and a
restarted controller resumes from the stored one (each audit moves it once, by its seen-marker).

An audit counts only if it answers an audit copy this pipeline made: the worker that answered below the cloud
recorded the copy (id → the answer it checked, `workers/audit_copies.py`), and the store applies the audit only
against that record, consuming it. A forged audit (no copy made, or one of another answer), a replay, or one whose
fields are out of bounds (messages.Audit) is dead-lettered with its reason and counted. The rule itself bounds how
far a window of audits moves the offset; every move past MOVE_LOGGED is logged with the audits that made it."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from dimee.state.base import REFUSALS, CentroidStore, Verdict, copy_mark

from dimee.common.errors import DimeeError, ServiceUnavailable
from dimee.method.control import Control, ControlRule
from dimee.method.tiers import TierPlan
from dimee.streaming import metrics
from dimee.streaming.config import Settings
from dimee.streaming.deployment import Deployment
from dimee.streaming.health import HEALTH
from dimee.streaming.messages import Audit
from dimee.streaming.runtime import log
from dimee.streaming.stage import Output, Stage, StageContext
from dimee.streaming.transport.base import Record

TIGHTENED_AT = 0.05  # "thresholds tightened" once the offset reaches this; "back at calibration" once it is 0 again
MOVE_LOGGED = 0.05  # a log line with its evidence each time the offset has moved this far since the last one
EVIDENCE_IDS = 20  # the disagreeing audits' ids a move's log line names (the first ones)


def control_rule(deployment: Deployment, settings: Settings) -> ControlRule:
    """The target is the calibration's: the share of the tuned cascade's answers below the cloud that disagreed
    with the full model there (or --control-target)."""
    target = settings.control_target
    if target is None:
        policy, calibration = deployment.policy, deployment.calibration
        if policy.thresholds != "tuned" or policy.router not in calibration.cascade_disagreement:
            raise DimeeError(f"--control needs a tuned policy (calibrate again with this version) or "
                             f"--control-target; {policy.name} has no calibrated disagreement to aim at")
        target = calibration.cascade_disagreement[policy.router]
    return ControlRule(target=target, step=settings.control_step)


@dataclass
class Evidence:
    """The audits applied since the offset was last logged: what a move's log line shows."""

    offset: float  # where it was logged last
    audits: int = 0
    disagreements: int = 0
    disagreed: list[str] = field(default_factory=list)  # the first EVIDENCE_IDS ids: bounded however long it runs
    workers: Counter = field(default_factory=Counter)  # bounded by the workers: a worker's name is at most 256 chars
    tiers: Counter = field(default_factory=Counter)

    def add(self, audit: Audit) -> None:
        self.audits += 1
        self.workers[audit.worker] += 1
        self.tiers[audit.tier.value] += 1
        if not audit.agree:
            self.disagreements += 1
            if len(self.disagreed) < EVIDENCE_IDS:
                self.disagreed.append(audit.id)


class ThresholdController(Stage):
    name = "controller"
    message_type = Audit

    def __init__(self, context: StageContext, store: CentroidStore, rule: ControlRule,
                 num_labels: int | None = None, plan: TierPlan | None = None) -> None:
        super().__init__(context, [context.topics.audits], context.topics.controller_group)
        self.store, self.rule = store, rule
        metrics.start_controller(REFUSALS.values())
        self.facts = {k: v for k, v in {"num_labels": num_labels, "plan": plan}.items() if v is not None}
        self.applied: list[tuple[bool, Control]] = []  # this instance's steps, in order: (disagreed, after)
        try:
            start = store.control()
        except ServiceUnavailable as exc:  # a bad or unreachable control: the stage waits on it when audits come
            log.warning("cannot read the threshold control", stage=self.name, error=str(exc))
            start = Control()
        self.tightened = start.offset >= TIGHTENED_AT
        self.evidence = Evidence(start.offset)
        log.info("controlling", stage=self.name, target=round(rule.target, 4), step=rule.step, window=rule.window,
                 max_move=rule.max_move, resumed_from=start.model_dump())

    def parse_context(self) -> dict:
        return {**super().parse_context(), **self.facts}

    def process(self, batch: list[tuple[Record, Audit]]) -> list[Output]:
        verdicts = [Verdict(audit.id, copy_mark(audit.tier.value, audit.label_pred), not audit.agree)
                    for _, audit in batch]
        steps = self.store.apply_control(verdicts, self.rule)
        letters = []
        for (record, audit), reason in zip(batch, steps.refused, strict=True):
            if reason is not None:
                metrics.AUDITS_REFUSED.labels(REFUSALS[reason]).inc()
                letters.append(self.dead_letter(record, reason))
            else:
                self.evidence.add(audit)
        moved = [not audit.agree for (_, audit), reason in zip(batch, steps.refused, strict=True) if reason is None]
        self.applied += list(zip(moved, steps.controls, strict=True))
        if steps.last is not None:
            metrics.THRESHOLD_OFFSET.set(steps.last.offset)
            self._say(steps.last, steps.state.anchor)
        return letters

    def _say(self, control: Control, anchor: float) -> None:
        """A line with the evidence for every move past MOVE_LOGGED; a warning when the offset reaches TIGHTENED_AT
        and a line when it is back at 0 (between them, silence: an offset hovering at 0 is no news)."""
        evidence = self.evidence
        if abs(control.offset - evidence.offset) >= MOVE_LOGGED:
            log.warning("threshold offset moved", stage=self.name, offset_from=round(evidence.offset, 4),
                        offset_to=round(control.offset, 4), version=control.version, audits=evidence.audits,
                        disagreements=evidence.disagreements, disagreed_ids=evidence.disagreed,
                        workers=dict(evidence.workers), tiers=dict(evidence.tiers),
                        held_at_window_bound=abs(control.offset - anchor) >= self.rule.max_move - 1e-12)
            self.evidence = Evidence(control.offset)
        if not self.tightened and control.offset >= TIGHTENED_AT:
            log.warning("thresholds tightened", stage=self.name, offset=round(control.offset, 4),
                        version=control.version)
            self.tightened = True
        elif self.tightened and control.offset == 0.0:
            log.info("thresholds back at calibration", stage=self.name, version=control.version)
            self.tightened = False


class LiveControl:
    """The control a router stamps: the stored one, or none (the calibrated thresholds) while it cannot be used:
    malformed, unreadable, or the store unreachable. Says so in a log line, `dimee_threshold_control_unusable`
    and a /readyz reason, until a read succeeds again (`dimee seed --only-missing` resets a bad one)."""

    def __init__(self, store: CentroidStore, stage: str) -> None:
        self.store, self.stage = store, stage
        self.problem: str | None = None
        HEALTH.needs("threshold control", self.reason)

    def reason(self) -> str | None:
        problem = self.problem
        return None if problem is None else (f"unusable ({problem}): serving the calibrated thresholds; "
                                             "`dimee seed --only-missing` resets it")

    def read(self) -> Control | None:
        try:
            control = self.store.control()
        except ServiceUnavailable as exc:  # BadControl among them
            self._trouble(str(exc))
            return None
        self._trouble(None)
        return control if control.version > 0 else None

    def _trouble(self, problem: str | None) -> None:
        metrics.CONTROL_UNUSABLE.set(int(problem is not None))
        if problem != self.problem:
            if problem is None:
                log.info("threshold control usable again", stage=self.stage)
            else:
                log.warning("threshold control unusable: serving the calibrated thresholds", stage=self.stage,
                            error=problem, fix="dimee seed --only-missing")
            self.problem = problem
