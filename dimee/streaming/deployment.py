"""What the router and the workers serve: a work folder's model, its calibration and one routing policy."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace
from functools import cached_property
from pathlib import Path

from dimee.common.workdir import Workdir
from dimee.method.calibration import Calibration
from dimee.method.routing_policy import RoutingPolicy, resolve


@dataclass(frozen=True)
class Deployment:
    workdir: Workdir
    calibration: Calibration
    policy: RoutingPolicy

    @classmethod
    def load(cls, workdir: Workdir | Path, policy: str = "auto") -> Deployment:
        """`policy`: a name from the policy table, or `auto` (WORKDIR/policy.json, else the paper's DIMEE-F)."""
        workdir = Workdir.of(workdir)
        return cls(workdir, Calibration.load(workdir.calibration), resolve(workdir, policy))

    @cached_property
    def state_id(self) -> str:
        """The centroid store's namespace: the model id and a fingerprint of the weights and the calibration,
        so two models (or two calibrations) of one data set never share, or overwrite, each other's centroids."""
        digest = hashlib.sha256()
        for path in (self.workdir.weights, self.workdir.calibration):
            with path.open("rb") as handle:
                for block in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(block)
        return f"{self.calibration.model_id}-{digest.hexdigest()[:12]}"

    def with_policy(self, policy: RoutingPolicy) -> Deployment:
        return replace(self, policy=policy)

    def describe(self) -> dict:
        """What is served, for the start-up log line of every role and its /readyz reader."""
        thresholds = self.policy.served_thresholds(self.calibration)
        return {"policy": self.policy.name, "router": self.policy.router, "adaptive": self.policy.adaptive,
                "feedback": self.policy.feedback, "escalation": self.policy.escalation,
                "exit_thresholds": thresholds.exit, "keep_thresholds": thresholds.keep,
                "alpha_star": round(self.calibration.alpha, 4),
                "caps": {tier.value: cap for tier, cap in self.calibration.plan},
                "model": self.calibration.model_id}
