"""The live threshold controller in the stream (embedded broker and store): it applies the audit stream to the
offset in the store exactly as `dimee.method.control.replay` does offline, the router stamps the offset on every
routed message, the workers serve it, and a restarted controller resumes from the store."""

from __future__ import annotations

import json
from collections import Counter

import pytest
from dimee.state.base import Verdict, copy_mark, namespace
from dimee.state.memory import shared_store

from dimee.composition import roles
from dimee.composition.pipeline import PipelineOptions, run_pipeline
from dimee.method.control import Control, ControlRule, replay
from dimee.method.tiers import Tier
from dimee.streaming.config import Settings
from dimee.streaming.messages import Audit, Routed
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
    store = shared_store(settings.state, namespace(settings.topic_prefix, served.state_id))
    assert store.control() == run.controls[-1][1]
    # a restarted controller resumes from the store: audits it sees again move nothing, new ones go on from there
    again = store.apply_control([_verdict(audit_id, a) for audit_id, a in run.audits.items()], rule)
    assert not any(again.applied) and store.control() == run.controls[-1][1]
    ctx = roles.context(settings)
    restarted = roles.controller(ctx, served, store)
    resumed = store.control_state()
    assert resumed.control == run.controls[-1][1]
    store.mark_audit_copies({"new-audit": "edge:0"})
    (step,) = store.apply_control([Verdict("new-audit", "edge:0", True)], restarted.rule).controls
    assert step == replay([True], rule, resumed)[0]


def _verdict(audit_id: str, audit: Audit) -> Verdict:
    return Verdict(audit_id, copy_mark(audit.tier.value, audit.label_pred), not audit.agree)


def test_the_router_stamps_the_live_offset_and_the_worker_serves_it(workdir, cal):
    """With the offset at its ceiling no tier below the cloud answers: every sample the edge would have answered
    at the calibrated thresholds goes on to the cloud."""
    from dimee.streaming.transport.base import Topics

    records = stream_records(40, seed=42)
    served = deployment(workdir, cal, "Edge+escalation")
    settings = Settings(broker="memory://stamped", state="memory://stamped", topic_prefix="stamped", audit_rate=0.0)
    store = shared_store(settings.state, namespace("stamped", served.state_id))
    store.seed(cal.centroid_arrays(), cal.pool_sizes)
    store.mark_audit_copies({f"a-{i}": "edge:1" for i in range(100)})
    store.apply_control([Verdict(f"a-{i}", "edge:1", True) for i in range(100)],
                        ControlRule(target=0.0, step=0.5, max_move=1.0))
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


def test_forged_and_replayed_audits_move_nothing_and_are_dead_lettered_with_their_reasons(workdir, cal):
    """Issue 28: 150 forged disagreements on the audits topic drove the offset to its ceiling (56 sufficed), and
    every sample then went to the cloud, with no log line. Now an audit counts only against the audit copy a worker
    of this pipeline made (the answer it checked), once: forged ones, replays and ones of another answer are
    dead-lettered and counted, and the offset stays where the real audits put it."""
    from dimee.streaming import metrics
    from dimee.streaming.transport.base import Topics

    served = deployment(workdir, cal, "Edge+escalation")
    settings = _settings("forged")
    run = run_pipeline(stream_records(60, seed=43), served, settings, PipelineOptions(progress=False))
    store = shared_store(settings.state, namespace(settings.topic_prefix, served.state_id))
    before, real = store.control(), next(iter(run.audits.values()))
    assert before.version == len(run.audits) > 0
    forged = [real.model_copy(update={"id": f"forged-{i}", "full_pred": 1 - real.label_pred, "agree": False})
              for i in range(150)]
    replayed = [real, real.model_copy(update={"full_pred": 1 - real.full_pred, "agree": not real.agree})]
    other = real.model_copy(update={"id": "other", "label_pred": 1 - real.label_pred,
                                    "agree": real.full_pred == 1 - real.label_pred})
    store.mark_audit_copies({"other": copy_mark(real.tier.value, real.label_pred)})  # a copy of another answer
    ctx = roles.context(settings)
    producer = ctx.transport.producer()
    for audit in [*forged, *replayed, other]:
        producer.send(ctx.topics.audits, audit.id.encode(), audit.to_bytes())
    producer.flush()
    refused = {label: metrics.AUDITS_REFUSED.labels(label)._value.get() for label in ("no-copy", "replayed",
                                                                                     "other-answer")}
    roles.controller(ctx, served, store).run(idle_exit_s=1.0)
    assert store.control() == before
    letters = [json.loads(r.value) for r in ctx.transport.read_all(Topics(settings.topic_prefix).dead_letter)]
    reasons = Counter(letter["error"].split(":")[0] for letter in letters if letter["stage"] == "controller")
    assert reasons == {"audit refused": 153}
    assert {label: metrics.AUDITS_REFUSED.labels(label)._value.get() - n for label, n in refused.items()} == \
        {"no-copy": 150, "replayed": 2, "other-answer": 1}


def test_the_controller_says_when_the_offset_moves_far_and_does_not_flap_around_zero(workdir, cal):
    """Issue 28: 'thresholds tightened' and 'back at calibration' alternated at every crossing of 0 (10 in a
    minute). Now they have hysteresis (tightened from TIGHTENED_AT, back at 0), and every move past MOVE_LOGGED is
    logged with the audits behind it."""
    from dimee.routers.controller import MOVE_LOGGED, TIGHTENED_AT
    from structlog.testing import capture_logs

    served = deployment(workdir, cal, "Edge+escalation")
    settings = _settings("flap")
    store = shared_store(settings.state, namespace(settings.topic_prefix, served.state_id))
    store.seed(cal.centroid_arrays(), cal.pool_sizes)
    controller = roles.controller(roles.context(settings), served, store)
    rule = controller.rule
    ids = iter(range(10_000))

    def audits(*disagreed: bool) -> list:
        batch = []
        for d in disagreed:
            i = f"s-{next(ids)}"
            store.mark_audit_copies({i: "edge:1"})
            batch.append((None, Audit(id=i, tier=Tier.EDGE, label_pred=1, full_pred=0 if d else 1, agree=not d,
                                      cost={"processing": 0, "offload": 0, "cloud": 1, "total": 1}, worker="w-1")))
        return batch

    assert rule.step * (1 - rule.target) < TIGHTENED_AT  # one disagreement leaves 0, not far enough to warn
    with capture_logs() as said:
        for _ in range(10):  # leave 0 by one disagreement, come back by agreements: ten crossings of 0
            controller.process(audits(True))
            controller.process(audits(*[False] * 30))
            assert store.control().offset == 0.0
    assert not [e for e in said if e["log_level"] == "warning"]
    with capture_logs() as said:
        controller.process(audits(*[True] * 10))
    offset = store.control().offset
    assert offset >= TIGHTENED_AT + MOVE_LOGGED
    tightened = [e for e in said if e["event"] == "thresholds tightened"]
    moved = [e for e in said if e["event"] == "threshold offset moved"]
    assert len(tightened) == 1 and moved
    assert moved[0]["disagreements"] >= 1 and moved[0]["workers"] == {"w-1": moved[0]["audits"]}
    assert all(i.startswith("s-") for i in moved[0]["disagreed_ids"])
