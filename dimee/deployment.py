"""What the router and the workers serve: a work folder's model, its calibration and one routing policy."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from dimee.calibration import Calibration
from dimee.routing_policy import RoutingPolicy, resolve
from dimee.workdir import Workdir


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

    def with_policy(self, policy: RoutingPolicy) -> Deployment:
        return Deployment(self.workdir, self.calibration, policy)
