"""Issue 28: `Routed.control` was the one lax field on the tier topics (5, 1e308, true, "0.5" accepted; 1e400 and
"inf" passed the mobile worker, which published `"offset": null`; extra keys accepted), and an `Audit` took any
value in any field (a 200 KB worker, a negative cost, a class the model does not have, the cloud as the audited
tier, an `agree` the two answers contradict). Now both are refused at parse, with a reason, like every other field."""

from __future__ import annotations

import json

import pytest

from dimee.method.control import Control
from dimee.method.tiers import Tier
from dimee.streaming.messages import Audit, CostBreakdown, MessageError, Routed, parse, worker_context
from tests.support.helpers import stream_records


def _routed_json(cal, control: object) -> bytes:
    sample = stream_records(1, prefix="c")[0]
    routed = Routed(**sample, tier=cal.plan.tiers[1], pool=1, distances=[], centroid_version=0, router="r")
    data = json.loads(routed.to_bytes())
    data["control"] = control
    return json.dumps(data).encode()


def _worker_facts(cal, tier: Tier) -> dict:
    return {"num_labels": cal.num_labels, **worker_context(tier, cal.plan, len(cal.centroids), 32)}


@pytest.mark.parametrize("control", [{"offset": 5, "version": 1}, {"offset": 1e308, "version": 1},
                                     {"offset": True, "version": 1}, {"offset": "0.5", "version": 1},
                                     {"offset": -0.1, "version": 1}, {"offset": 0.5, "version": True},
                                     {"offset": 0.5, "version": 1.0}, {"offset": 0.5, "version": -1},
                                     {"offset": 0.5, "version": 1, "extra": 1}, "0.5", [0.5, 1]])
def test_a_control_that_is_not_a_finite_offset_in_0_1_is_refused(cal, control):
    with pytest.raises(MessageError, match="control"):
        parse(Routed, _routed_json(cal, control), _worker_facts(cal, cal.plan.tiers[1]))


@pytest.mark.parametrize("literal", ["1e400", "-1e400", "Infinity", "NaN"])
def test_a_control_offset_that_reads_as_infinity_is_refused(cal, literal):
    value = _routed_json(cal, {"offset": 0.25, "version": 1}).replace(b"0.25", literal.encode())
    with pytest.raises(MessageError):
        parse(Routed, value, _worker_facts(cal, cal.plan.tiers[1]))


def test_a_sound_control_is_served(cal):
    facts = _worker_facts(cal, cal.plan.tiers[1])
    for offset in (0, 0.0, 0.5, 1, 1.0):
        routed = parse(Routed, _routed_json(cal, {"offset": offset, "version": 3}), facts)
        assert routed.control == Control(offset=float(offset), version=3)


def _audit(**fields) -> bytes:
    cost = CostBreakdown(processing=0.5, offload=0.1, cloud=0.2, total=0.8).model_dump()
    return json.dumps({"id": "s-1", "tier": "edge", "label_pred": 1, "full_pred": 0, "agree": False,
                       "cost": cost, "worker": "worker-cloud-1", **fields}).encode()


BAD_AUDITS = {"a 200 KB worker": ({"worker": "w" * 200_000}, "worker"),
              "an empty worker": ({"worker": ""}, "worker"),
              "a negative cost": ({"cost": {"processing": -1.0, "offload": 0.0, "cloud": 0.0, "total": -1.0}}, "cost"),
              "a class 10^30": ({"label_pred": 10**30, "full_pred": 0}, "label_pred"),
              "a negative class": ({"full_pred": -1}, "full_pred"),
              "an unknown label": ({"label": 7}, "label"),
              "the cloud audited": ({"tier": "cloud"}, "tier"),
              "agree against the answers": ({"agree": True}, "agree"),
              "disagree against the answers": ({"full_pred": 1, "agree": False}, "agree"),
              "an extra field": ({"verdict": "forged"}, "verdict")}


@pytest.mark.parametrize("case", list(BAD_AUDITS))
def test_an_audit_out_of_bounds_is_refused(cal, case):
    fields, where = BAD_AUDITS[case]
    with pytest.raises(MessageError, match=where):
        parse(Audit, _audit(**fields), {"num_labels": cal.num_labels, "plan": cal.plan})


def test_a_sound_audit_is_read(cal):
    audit = parse(Audit, _audit(), {"num_labels": cal.num_labels, "plan": cal.plan})
    assert audit.tier == Tier.EDGE and not audit.agree
    assert parse(Audit, _audit(full_pred=1, agree=True), {"num_labels": cal.num_labels, "plan": cal.plan}).agree
