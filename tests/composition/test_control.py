"""The live threshold controller in the stream (embedded broker and store): it applies the audit stream to the
offset in the store exactly as `dimee.method.control.replay` does offline, the router stamps the offset on every
routed message, the workers serve it, and a restarted controller resumes from the store."""

from __future__ import annotations

import pytest
from dimee.state.memory import shared_store

from dimee.composition import roles
from dimee.composition.pipeline import PipelineOptions, run_pipeline
from dimee.method.control import Control, ControlRule, replay
from dimee.method.tiers import Tier
from dimee.streaming.config import Settings
from dimee.streaming.messages import Routed
from tests.support.helpers import deployment, stream_records


def _settings(name: str, **more) -> Settings:
    options = {"audit_rate": 1.0, "control": True, "control_target": 0.05, "control_step": 0.05, **more}
    return Settings(broker=f"memory://{name}", state=f"memory://{name}", topic_prefix=name, **options)


def test_the_stream_moves_the_offset_as_an_offline_replay_of_its_audits_does_and_a_restart_resumes(workdir, cal):
    records = stream_records(120, seed=41)
    served = deployment(workdir, cal, "Edge+escalation")
    settings = _settings("control")
    run = run_pipeline(records, served, settings, PipelineOptions(progress=False))
    assert len(run.controls) == len(run.audits) > 0  # every audit moved the offset once
    rule = ControlRule(target=0.05, step=0.05)
    outcomes = [disagreed for disagreed, _ in run.controls]
    assert [c for _, c in run.controls] == replay(outcomes, rule)  # the stream's thresholds over time, offline
    assert sum(outcomes) == sum(not a.agree for a in run.audits.values())
    store = shared_store(settings.state, served.state_id)
    assert store.control() == run.controls[-1][1]
    # a restarted controller resumes from the store: audits it sees again move nothing, new ones go on from there
    again = store.apply_control([(audit_id, not a.agree) for audit_id, a in run.audits.items()], rule)
    assert not any(again.applied) and store.control() == run.controls[-1][1]
    ctx = roles.context(settings)
    restarted = roles.controller(ctx, served, store)
    (step,) = store.apply_control([("new-audit", True)], restarted.rule).controls
    assert step == replay([True], rule, run.controls[-1][1])[0]


def test_the_router_stamps_the_live_offset_and_the_worker_serves_it(workdir, cal):
    """With the offset at its ceiling no tier below the cloud answers: every sample the edge would have answered
    at the calibrated thresholds goes on to the cloud."""
    from dimee.streaming.transport.base import Topics

    records = stream_records(40, seed=42)
    served = deployment(workdir, cal, "Edge+escalation")
    settings = Settings(broker="memory://stamped", state="memory://stamped", topic_prefix="stamped", audit_rate=0.0)
    store = shared_store(settings.state, served.state_id)
    store.seed(cal.centroid_arrays(), cal.pool_sizes)
    store.apply_control([(f"a-{i}", True) for i in range(100)], ControlRule(target=0.0, step=0.5))
    assert store.control() == Control(offset=1.0, version=100)
    run = run_pipeline(records, served, settings, PipelineOptions(progress=False, reseed=False))
    assert all([t.value for t in p.path] == ["edge", "cloud"] for p in run.predictions.values())
    routed = [Routed.model_validate_json(r.value) for r in
              roles.context(settings).transport.read_all(Topics("stamped").tier("edge"))]
    assert len(routed) == 40 and all(m.control == Control(offset=1.0, version=100) for m in routed)
    calibrated = run_pipeline(records, served, _settings("unstamped", control=False, audit_rate=0.0),
                              PipelineOptions(progress=False))
    answered_at_edge = [i for i, p in calibrated.predictions.items() if p.tier == Tier.EDGE]
    assert answered_at_edge  # at the calibrated thresholds the edge answers some samples itself


def test_the_controller_needs_a_target(workdir, cal):
    from dimee.routers.controller import control_rule

    from dimee.common.errors import DimeeError

    with pytest.raises(DimeeError, match="needs a tuned policy"):
        control_rule(deployment(workdir, cal, "Edge+escalation"), Settings())
    assert control_rule(deployment(workdir, cal, "Tuned-edge-cascade"), Settings()).target == \
        cal.cascade_disagreement["edge"]
