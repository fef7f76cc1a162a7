"""Scenarios (k)-(n): the pipeline's state in Redis under attack or damage (issue 28). Forged and replayed
audits must move no threshold, a second pipeline on the same Redis must touch none of the first's keys, a damaged
control key must leave the router serving the calibrated thresholds until `dimee seed --only-missing` repairs
it, and a Redis refusing writes (OOM) must be an outage of the centroid updates: in each, no sample lost,
duplicated or dead-lettered because of the state."""

from __future__ import annotations

import json
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager

from dimee.state import namespace

from benchmarks.faults.cluster import say
from benchmarks.faults.hostile import INJECTOR, send_raw
from benchmarks.faults.reading import loads, read_topic, sink_answers
from benchmarks.faults.runs import (
    STEADY_RATE,
    Run,
    Suite,
    into_a_stream,
    new_run,
    sleep_until,
    start_producer,
    start_roles,
    stream_seconds,
    wait_answered,
)
from dimee.method.control import ControlRule, ControlState, replay
from dimee.streaming.processes import DIMEE

# The controlled runs: an adaptive router that escalates (so the offset it stamps changes what the workers
# answer and what it costs) with the controller beside it, aiming at 0 disagreement: a genuine agreement then
# moves nothing and a disagreement raises the offset one step, so the offset the genuine audits make is the
# same in whatever order they come (within one window of audits; AUDIT_RATE keeps a run's audits under it).
TARGET = 0.0
CONTROLLED = ["--policy", "DIMEE-D+esc", "--control", "--control-target", f"{TARGET:g}"]
AUDIT_RATE = 0.1
RULE = ControlRule(target=TARGET)  # the controller's rule: --control-step's default, one window, max_move


def controlled(run: Run) -> None:
    run.policy_args, run.worker_args = CONTROLLED, ["--audit-rate", f"{AUDIT_RATE:g}"]


def forged_audit(sample_id: str, tier: str, label_pred: int, full_pred: int) -> bytes:
    """An audit the controller's parse accepts (every field in bounds), from no worker of this pipeline."""
    from dimee.streaming.messages import Audit, CostBreakdown

    free = CostBreakdown(processing=0.0, offload=0.0, cloud=0.0, total=0.0)
    return Audit(id=sample_id, tier=tier, label_pred=label_pred, full_pred=full_pred,  # type: ignore[arg-type]
                 agree=label_pred == full_pred, cost=free, worker=INJECTOR).model_dump_json().encode()


def forgeries(answers: dict[str, tuple[str, int]], num_labels: int, audited: set[str]) -> list[tuple[str, bytes]]:
    """A forged disagreement for each answer below the cloud: for an id the workers audit, the other answer (an
    audit copy of it exists: refused as other-answer, or as replayed once the genuine audit has moved the
    offset); for any other id, its own answer (no copy: refused as no-copy). Each would raise the offset."""
    out = []
    for sample_id, (tier, label) in answers.items():
        if tier == "cloud":
            continue
        other = (label + 1) % num_labels
        checked = other if sample_id in audited else label
        out.append((sample_id, forged_audit(sample_id, tier, checked, (checked + 1) % num_labels)))
    return out


def audit_figures(audits: list[dict], letters: list[dict], stored: ControlState | str, forged: int,
                  replays: int) -> dict:
    """What the audits did to the control. The genuine ones are the pipeline's cloud worker's (every other
    record on the audits topic is this suite's); with TARGET 0 their offset is the replay of their outcomes in
    any order, and that is what the workers should serve: forged records changed the thresholds (and so the
    cost) iff the stored offset differs from it or more audits were applied than genuine ones exist."""
    genuine: dict[str, bool] = {}
    for audit in audits:
        if audit.get("worker") != INJECTOR and isinstance(audit.get("id"), str):
            genuine.setdefault(audit["id"], not audit.get("agree"))
    refused = Counter(str(letter.get("error")) for letter in letters if letter.get("stage") == "controller")
    expected = (replay(genuine.values(), RULE) or [ControlState().control])[-1]
    counted = (replay([*genuine.values(), *[True] * forged], RULE) or [ControlState().control])[-1]
    figures = {"audits_genuine": len(genuine), "audits_genuine_disagreed": sum(genuine.values()),
               "forged_sent": forged, "replays_sent": replays, "audits_refused": sum(refused.values()),
               "audits_refused_reasons": dict(refused), "offset_of_genuine_audits": expected.offset,
               "offset_had_forgeries_counted": counted.offset}
    if isinstance(stored, str):
        return {**figures, "control_stored": stored}
    return {**figures, "audits_applied": stored.control.version, "offset_stored": stored.control.offset,
            "forgeries_moved_nothing": stored.control.version == len(genuine)
            and abs(stored.control.offset - expected.offset) < 1e-9 and sum(refused.values()) == forged + replays}


def _stored_control(run: Run) -> ControlState | str:
    """The control as the store reads it (its key layout and checks), or why it could not be read."""
    from dimee.state.redis_store import RedisCentroidStore

    from dimee.common.errors import ServiceUnavailable

    store = RedisCentroidStore(run.suite.cluster.redis, namespace(run.prefix, run.suite.state_id))
    try:
        return store.control_state()
    except ServiceUnavailable as exc:  # BadControl among them
        return f"{exc.__class__.__name__}: {exc}"
    finally:
        store.close()


def _audits_settled(run: Run, forged: int, replays: int, limit_s: float = 90.0) -> dict:
    """Once every record on the audits topic is applied or refused (or limit_s passed): the audit figures."""
    deadline = time.monotonic() + limit_s
    while True:
        audits = [loads(r.value) for r in read_topic(run.suite.cluster.kafka, f"{run.prefix}.audits", limit_s=30)]
        letters = [loads(r.value) for r in read_topic(run.suite.cluster.kafka, f"{run.prefix}.dead-letter",
                                                      limit_s=30)]
        stored = _stored_control(run)
        figures = audit_figures(audits, letters, stored, forged, replays)
        done = figures.get("audits_applied", 0) + figures["audits_refused"] >= len(audits)
        if done or time.monotonic() > deadline:
            if not done:
                run.notes.append(f"audits not all applied or refused after {limit_s:.0f} s: {len(audits)} on the "
                                 f"topic, {figures.get('audits_applied')} applied, {figures['audits_refused']} refused")
            return figures
        time.sleep(3)


def scenario_forged_audits(suite: Suite) -> Run:
    from kafka import KafkaProducer

    from dimee.streaming.audit import audited

    run = new_run(suite, "k", "forged and replayed audits (controller on)", suite.args.other_samples)
    controlled(run)
    start_roles(run)
    num_labels = int(json.loads((suite.workdir / "calibration.json").read_text())["num_labels"])
    audit_ids = {i for i in run.valid_ids() if audited(i, AUDIT_RATE)}
    producer = KafkaProducer(bootstrap_servers=suite.cluster.kafka, acks="all")
    topic, forged, made_up, seen = f"{run.prefix}.audits", 0, 0, set()
    start_producer(run, STEADY_RATE)
    try:
        while time.monotonic() < run.stream_at + stream_seconds(run, STEADY_RATE) + 10:
            time.sleep(2)
            fresh = {i: a for i, a in sink_answers(run.sink_path).items() if i not in seen}
            seen |= fresh.keys()
            for sample_id, value in forgeries(fresh, num_labels, audit_ids):
                send_raw(producer, topic, sample_id, value)
                forged += 1
            made_up_id = f"{run.prefix}-forged-{made_up}"  # an id no sample has
            send_raw(producer, topic, made_up_id, forged_audit(made_up_id, "mobile", 0, 1))
            forged, made_up = forged + 1, made_up + 1
        wait_answered(run, suite.args.deadline_s, "with forged audits")
        settled = _audits_settled(run, forged, 0)
        genuine = [r for r in read_topic(suite.cluster.kafka, topic) if loads(r.value).get("worker") != INJECTOR]
        for record in genuine:  # each genuine audit again, byte for byte: a replay
            send_raw(producer, topic, loads(record.value)["id"], record.value)
    finally:
        producer.close()
    say(f"   sent {forged} forged audits ({made_up} of made-up ids), replayed {len(genuine)} genuine ones")
    run.extra.update(_audits_settled(run, forged, len(genuine)))
    run.notes.append(f"audits before the replays: {settled.get('audits_applied')} applied of "
                     f"{settled['audits_genuine']} genuine, {settled['audits_refused']} refused")
    run.notes.append(f"offset stored {run.extra.get('offset_stored', run.extra.get('control_stored'))}, of the "
                     f"genuine audits alone {run.extra['offset_of_genuine_audits']}, had the forgeries counted "
                     f"{run.extra['offset_had_forgeries_counted']}; refused {run.extra['audits_refused_reasons']}")
    return run


def scenario_two_pipelines(suite: Suite) -> Run:
    """The first of two pipelines of one model on one Redis: the second starts (its router reseeds its own
    state) while the first streams; its row is (l-2)'s."""
    first = into_a_stream(suite, "l-1", "first of two pipelines on one Redis", 0.2)
    second = new_run(suite, "l-2", "second pipeline on the same Redis (reseeded mid-stream of the first)",
                     suite.args.other_samples)
    started = time.monotonic()
    start_roles(second)  # its router-1 reseeds before the others start
    first.notes.append(f"the second pipeline's roles started {started - first.stream_at:.0f}–"
                       f"{time.monotonic() - first.stream_at:.0f} s into this stream of "
                       f"{stream_seconds(first, STEADY_RATE):.0f} s")
    start_producer(second, STEADY_RATE)
    suite.pending.append(second)
    sleep_until(first.stream_at + stream_seconds(first, STEADY_RATE))
    wait_answered(first, suite.args.deadline_s, "beside a second pipeline")
    return first


def scenario_second_pipeline(suite: Suite) -> Run:
    run = suite.pending.pop()
    sleep_until(run.stream_at + stream_seconds(run, STEADY_RATE))
    wait_answered(run, suite.args.deadline_s, "the second pipeline")
    return run


def scenario_damaged_control(suite: Suite) -> Run:
    import redis

    run = into_a_stream(suite, "m", "damaged control key, then seed --only-missing", 0.25, controlled)
    key = f"{namespace(run.prefix, suite.state_id)}:control"
    client = redis.Redis.from_url(suite.cluster.redis)
    fifth = stream_seconds(run, STEADY_RATE) / 5
    try:
        client.hset(key, mapping=DAMAGED_FIELDS)
        say(f"   {key}: offset nan; the router should serve the calibrated thresholds")
        time.sleep(fifth)
        client.delete(key)
        client.set(key, DAMAGED_STRING)
        say(f"   {key}: a string, not a hash")
        time.sleep(fifth)
    finally:
        client.close()
    seeded = subprocess.run([DIMEE, "seed", "--only-missing", "--workdir", str(suite.workdir)], env=run.sup.env,
                            capture_output=True, text=True, timeout=120)
    run.notes.append(f"`dimee seed --only-missing`: rc {seeded.returncode}: "
                     f"{' '.join((seeded.stdout or seeded.stderr).split())[:320]}")
    sleep_until(run.stream_at + stream_seconds(run, STEADY_RATE))
    wait_answered(run, suite.args.deadline_s, "after the control was repaired")
    routers = [r for r in run.sup.roles.values() if r.kind == "router"]
    said = {phrase: sum(r.log_text().count(phrase) for r in routers)
            for phrase in ("threshold control unusable", "threshold control usable again")}
    run.extra.update({"router_said": said, "control_after": str(_stored_control(run))})
    run.notes.append(f"router log lines: {said}; control at the end: {run.extra['control_after']}")
    return run


DAMAGED_FIELDS = {"offset": "nan", "version": "1", "anchor": "0.0"}  # (m) a malformed field
DAMAGED_STRING = "not a hash"  # (m) a key of another type


@contextmanager
def refusing_writes(client) -> Iterator[None]:
    """Redis out of memory (maxmemory 1 byte, noeviction: every write refused with OOM) while inside; its
    maxmemory and policy as they were afterwards, whatever happened."""
    before = {name: client.config_get(name)[name] for name in ("maxmemory", "maxmemory-policy")}
    try:
        client.config_set("maxmemory-policy", "noeviction")
        client.config_set("maxmemory", 1)
        yield
    finally:
        for name in ("maxmemory", "maxmemory-policy"):
            client.config_set(name, before[name])


def scenario_redis_oom(suite: Suite) -> Run:
    import redis

    run = into_a_stream(suite, "n", "Redis out of memory (writes refused) mid-stream", 0.25, controlled)
    client = redis.Redis.from_url(suite.cluster.redis, decode_responses=True)
    try:
        with refusing_writes(client):
            say(f"   Redis maxmemory 1 byte (noeviction) for {suite.args.outage_s:.0f} s")
            time.sleep(suite.args.outage_s)
    finally:
        client.close()
    sleep_until(run.stream_at + stream_seconds(run, STEADY_RATE))
    wait_answered(run, suite.args.deadline_s, "after Redis took writes again")
    said = {phrase: sum(r.log_text().count(phrase) for r in run.sup.roles.values())
            for phrase in ("the store refuses writes", "centroids move again")}
    run.extra["roles_said"] = said
    run.notes.append(f"Redis refused writes {suite.args.outage_s:.0f} s; log lines {said}; centroid Δ below the "
                     f"routed ids by the samples routed meanwhile (by design: their moves were skipped)")
    return run
