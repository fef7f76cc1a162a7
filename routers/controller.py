"""The live threshold controller: consumes the online audit (`dimee.streaming.audit`) and moves the offset on the
exit thresholds of the tiers below the cloud (`dimee.method.control`) in the state store, beside the centroids.
Routers stamp the offset on every routed message; workers serve it. So every instance serves one offset, and a
restarted controller resumes from the stored one (each audit moves it once, by its seen-marker)."""

from __future__ import annotations

from dimee.state.base import CentroidStore

from dimee.common.errors import DimeeError
from dimee.method.control import Control, ControlRule
from dimee.streaming import metrics
from dimee.streaming.config import Settings
from dimee.streaming.deployment import Deployment
from dimee.streaming.messages import Audit
from dimee.streaming.runtime import log
from dimee.streaming.stage import Output, Stage, StageContext
from dimee.streaming.transport.base import Record


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


class ThresholdController(Stage):
    name = "controller"
    message_type = Audit

    def __init__(self, context: StageContext, store: CentroidStore, rule: ControlRule) -> None:
        super().__init__(context, [context.topics.audits], context.topics.controller_group)
        self.store, self.rule = store, rule
        self.applied: list[tuple[bool, Control]] = []  # this instance's steps, in order: (disagreed, after)
        self.tightened = store.control().offset > 0
        log.info("controlling", stage=self.name, target=round(rule.target, 4), step=rule.step,
                 resumed_from=store.control().model_dump())

    def process(self, batch: list[tuple[Record, Audit]]) -> list[Output]:
        outcomes = [(audit.id, not audit.agree) for _, audit in batch]
        steps = self.store.apply_control(outcomes, self.rule)
        moved = [disagreed for (_, disagreed), ok in zip(outcomes, steps.applied, strict=True) if ok]
        self.applied += list(zip(moved, steps.controls, strict=True))
        if steps.last is not None:
            metrics.THRESHOLD_OFFSET.set(steps.last.offset)
            self._say(steps.last)
        return []

    def _say(self, control: Control) -> None:
        """A log line when the controller starts tightening and when it is back at the calibrated thresholds."""
        tightened = control.offset > 0
        if tightened != self.tightened:
            log.warning("thresholds tightened" if tightened else "thresholds back at calibration", stage=self.name,
                        offset=round(control.offset, 4), version=control.version)
            self.tightened = tightened
