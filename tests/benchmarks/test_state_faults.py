"""The logic of the fault suite's state scenarios (k)-(n), without a cluster: the forged audits are ones the
controller's parse accepts (so a refusal in the report is the store's, by its reason, not a parse error), the
figures say a forgery moved the offset when one did, the damage (m) does is damage to the store's reader, and (n)
gives Redis its memory settings back whatever happens."""

import random

import pytest
from dimee.state.base import NO_COPY, OTHER_ANSWER, REPLAYED, BadControl, read_control, write_control

from benchmarks.faults.hostile import INJECTOR
from benchmarks.faults.report import mean_cost, samples_dead_lettered
from benchmarks.faults.state_faults import (
    AUDIT_RATE,
    DAMAGED_FIELDS,
    DAMAGED_STRING,
    RULE,
    audit_figures,
    forged_audit,
    forgeries,
    refusing_writes,
)
from dimee.method.control import ControlState, replay
from dimee.streaming.audit import audited
from dimee.streaming.messages import Audit, parse


def test_a_forged_audit_passes_the_controllers_parse():
    audit = parse(Audit, forged_audit("s-1", "edge", 1, 0), {"num_labels": 2}, key=b"s-1")
    assert (audit.worker, audit.agree, audit.label_pred, audit.full_pred) == (INJECTOR, False, 1, 0)


def test_forgeries_are_disagreements_below_the_cloud_of_the_answer_no_copy_was_made_of():
    answers = {"a": ("mobile", 0), "b": ("edge", 1), "c": ("cloud", 1)}
    forged = {i: parse(Audit, v, {"num_labels": 2}) for i, v in forgeries(answers, 2, audited={"a"})}
    assert set(forged) == {"a", "b"}  # the cloud's answers are never audited
    assert forged["a"].label_pred == 1  # audited: the other answer than its copy's
    assert forged["b"].label_pred == 1  # not audited: its own answer, and no copy exists
    assert not any(a.agree for a in forged.values())


def _audits(outcomes: dict[str, bool]) -> list[dict]:
    return [{"id": i, "agree": not d, "worker": "dimee-cloud-cloud-1"} for i, d in outcomes.items()]


def _stored(outcomes: list[bool]) -> ControlState:
    controls = replay(outcomes, RULE)
    return ControlState(control=controls[-1], anchor=0.0) if controls else ControlState()


OUTCOMES = {f"s-{k}": k % 3 == 0 for k in range(30)}


def test_the_genuine_offset_is_the_same_in_any_order_at_the_target_the_scenario_sets():
    shuffled = list(OUTCOMES.values())
    random.Random(1).shuffle(shuffled)
    assert replay(shuffled, RULE)[-1] == replay(OUTCOMES.values(), RULE)[-1]


def test_figures_say_forgeries_moved_nothing_when_only_the_genuine_audits_were_applied():
    forged = [{"id": f"x-{k}", "agree": False, "worker": INJECTOR} for k in range(40)]
    letters = [{"stage": "controller", "error": NO_COPY}] * 35 + [{"stage": "controller", "error": OTHER_ANSWER}] * 5
    letters += [{"stage": "controller", "error": REPLAYED}] * 30
    figures = audit_figures(_audits(OUTCOMES) + forged + _audits(OUTCOMES), letters, _stored(list(OUTCOMES.values())),
                            forged=40, replays=30)
    assert figures["forgeries_moved_nothing"]
    assert figures["audits_genuine"] == figures["audits_applied"] == 30
    assert figures["offset_had_forgeries_counted"] > figures["offset_of_genuine_audits"] == figures["offset_stored"]


def test_figures_say_a_forgery_moved_the_offset_when_one_was_applied():
    letters = [{"stage": "controller", "error": NO_COPY}] * 39
    stored = _stored([*OUTCOMES.values(), True])  # one forged disagreement counted
    figures = audit_figures(_audits(OUTCOMES), letters, stored, forged=40, replays=0)
    assert not figures["forgeries_moved_nothing"]
    assert figures["offset_stored"] > figures["offset_of_genuine_audits"]


def test_an_unreadable_control_is_reported_not_taken_for_a_result():
    figures = audit_figures(_audits(OUTCOMES), [], "BadControl: offset 'nan'", forged=0, replays=0)
    assert "forgeries_moved_nothing" not in figures and figures["control_stored"].startswith("BadControl")


def test_the_audit_rate_keeps_a_scenarios_audits_within_one_window():
    """Order-free only within one window of audits: the default 600 samples' audited share stays under it."""
    ids = [f"faults-k-000000-{n}" for n in range(600)]
    assert sum(audited(i, AUDIT_RATE) for i in ids) < RULE.window


def test_the_damage_of_scenario_m_is_damage_to_the_stores_reader():
    with pytest.raises(BadControl):
        read_control(DAMAGED_FIELDS)
    assert read_control(write_control(ControlState())) == ControlState()
    assert isinstance(DAMAGED_STRING, str)  # a string key where a hash belongs: WRONGTYPE to HMGET


class FakeRedis:
    def __init__(self) -> None:
        self.config = {"maxmemory": "0", "maxmemory-policy": "allkeys-lru"}

    def config_get(self, name: str) -> dict:
        return {name: self.config[name]}

    def config_set(self, name: str, value: object) -> None:
        self.config[name] = str(value)


def test_redis_gets_its_memory_settings_back_even_when_the_scenario_fails():
    client = FakeRedis()
    with pytest.raises(RuntimeError), refusing_writes(client):
        assert client.config == {"maxmemory": "1", "maxmemory-policy": "noeviction"}
        raise RuntimeError("the scenario failed mid-outage")
    assert client.config == {"maxmemory": "0", "maxmemory-policy": "allkeys-lru"}


def test_samples_dead_lettered_and_mean_cost_count_the_valid_samples_only():
    letters = [{"key": "s-1", "topic": "P.edge"}, {"key": "s-2", "topic": "P.audits"},  # (k)'s forgery, not s-2
               {"key": "forged-1", "topic": "P.samples"}, {"key": None, "topic": "P.samples"}]
    assert samples_dead_lettered(letters, ["s-1", "s-2"], "P") == 1
    assert mean_cost({"s-1": 1.0, "s-2": 3.0, "forged-1": 100.0}, ["s-1", "s-2", "s-3"]) == 2.0
    assert mean_cost({}, ["s-1"]) is None
