"""A capacity plan as values for the Helm chart (deploy/helm/dimee/values.yaml): only the keys the plan
decides (partitions, replicas, threads, batches, autoscaling bounds, GPU on or off); everything else keeps the
chart's defaults or the operator's own values file."""

from __future__ import annotations

from pathlib import Path

import yaml

from dimee.common.files import write_atomically
from dimee.offline.capacity.sizing import Plan, RolePlan


def _autoscaled(role: RolePlan) -> dict:
    return {"replicas": role.instances, "threads": role.threads,
            "autoscaling": {"enabled": True, "minReplicas": role.instances, "maxReplicas": role.max_instances,
                            "lagThreshold": role.lag_threshold}}


def chart_values(plan: Plan, guarantee: str) -> dict:
    target = plan.target
    router, sink = plan.role("router"), plan.role("sink")
    workers = {}
    for role in plan.roles:
        if role.role.startswith("worker-"):
            workers[role.topic] = {**_autoscaled(role), "maxBatch": role.max_batch, "maxWaitMs": target.max_wait_ms,
                                   "gpu": {"enabled": role.device == "cuda"}}
    return {
        "guarantee": guarantee,
        "auditRate": target.audit_rate,
        "topics": plan.partitions(),
        "router": {**_autoscaled(router), "maxBatch": router.max_batch, "maxWaitMs": target.max_wait_ms},
        "workers": workers,
        "sink": {"replicas": sink.instances},
    }


def write_values(path: Path, plan: Plan, guarantee: str, header: str) -> None:
    """The values file, a comment header (the target and where the rates came from) above the YAML."""
    comment = "".join(f"# {line}\n" if line else "#\n" for line in header.splitlines())
    text = comment + yaml.safe_dump(chart_values(plan, guarantee), sort_keys=False, default_flow_style=False)
    write_atomically(path, text)
