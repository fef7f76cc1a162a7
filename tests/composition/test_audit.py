"""The online audit in the stream (embedded broker and store): the chosen share of the answers below the cloud
is run again by the whole model there, each audited exactly once, without touching the answers; the audit says
what the full model says and costs what Cloud-only costs."""

from __future__ import annotations

import numpy as np
import pytest

from dimee.composition.pipeline import PipelineOptions, run_pipeline
from dimee.method.tiers import Tier
from dimee.streaming.audit import AuditTally, audited
from dimee.streaming.config import Settings
from tests.support.helpers import deployment, stream_records
from tests.support.stream_checks import offline_records


def _run(workdir, cal, records, rate: float, name: str):
    settings = Settings(broker=f"memory://{name}", state=f"memory://{name}", topic_prefix=name, audit_rate=rate)
    return run_pipeline(records, deployment(workdir, cal, "DIMEE-F"), settings, PipelineOptions(progress=False))


def test_every_answer_below_the_cloud_is_audited_once_and_the_answers_stand(workdir, cal):
    records = stream_records(90, seed=31)
    plain, audited_run = _run(workdir, cal, records, 0.0, "no-audit"), _run(workdir, cal, records, 1.0, "audit")
    assert plain.audits == {}
    assert {i: p.label_pred for i, p in audited_run.predictions.items()} == \
           {i: p.label_pred for i, p in plain.predictions.items()}  # a shadow: no answer changes, none is added
    below = {i for i, p in audited_run.predictions.items() if p.tier != Tier.CLOUD}
    assert below and set(audited_run.audits) == below
    full = offline_records(records, workdir).probs[:, -1].argmax(-1)
    index = {r["id"]: i for i, r in enumerate(records)}
    cloud_only = cal.cost_model.cloud_only(cal.num_layers)
    for sample_id, audit in audited_run.audits.items():
        answered = audited_run.predictions[sample_id]
        assert (audit.tier, audit.label_pred) == (answered.tier, answered.label_pred)
        assert audit.full_pred == full[index[sample_id]] and audit.agree == (audit.full_pred == audit.label_pred)
        assert audit.cost.total == pytest.approx(cloud_only)
    tally = AuditTally()
    for audit in audited_run.audits.values():
        tally.add(audit)
    summary = tally.summary()
    assert sum(s["audits"] for s in summary.values()) == len(below)
    assert all(s["interval"][0] <= s["disagreement"] <= s["interval"][1] for s in summary.values())


def test_the_audited_share_follows_the_rate_and_the_ids(workdir, cal):
    records = stream_records(120, seed=32)
    run = _run(workdir, cal, records, 0.3, "audit-share")
    below = [i for i, p in run.predictions.items() if p.tier != Tier.CLOUD]
    assert set(run.audits) == {i for i in below if audited(i, 0.3)}
    assert 0 < len(run.audits) < len(below)


def test_which_ids_are_audited_is_a_fixed_function_of_the_id_and_the_rate():
    ids = [f"sample-{i}" for i in range(20_000)]
    picked = np.array([audited(i, 0.05) for i in ids])
    assert 0.045 < picked.mean() < 0.055
    assert picked.tolist() == [audited(i, 0.05) for i in ids]  # the same again: a replay audits the same samples
    assert not any(audited(i, 0.0) for i in ids[:100]) and all(audited(i, 1.0) for i in ids[:100])
    # a larger rate audits a superset: raising it never drops a sample already being audited
    assert all(audited(i, 0.2) for i, p in zip(ids, picked, strict=True) if p)
