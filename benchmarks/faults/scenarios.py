"""The scenarios (a)-(j) of the fault suite, each on its own topic prefix: what each one does to the running
roles, and the registry of every scenario ((k)-(n), the pipeline's state, are in `benchmarks.faults.state_faults`).
The machinery they drive is in `benchmarks.faults.cluster` and `benchmarks.faults.runs`."""

from __future__ import annotations

import signal
import subprocess
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from benchmarks.faults.cluster import Role, say
from benchmarks.faults.hostile import (
    Hostile,
    encode,
    hostile_routed,
    hostile_samples,
    malformed_samples,
    send_hostile,
    send_raw,
    send_valid,
)
from benchmarks.faults.reading import leader_of, loads
from benchmarks.faults.runs import (
    STEADY_RATE,
    Run,
    Suite,
    busiest_tier,
    into_a_stream,
    new_run,
    sleep_until,
    start_producer,
    start_roles,
    stream_seconds,
    wait_answered,
    worker_build,
)
from benchmarks.faults.state_faults import (
    scenario_damaged_control,
    scenario_forged_audits,
    scenario_redis_oom,
    scenario_second_pipeline,
    scenario_two_pipelines,
)
from dimee.streaming.processes import DIMEE


def scenario_kill_storm(suite: Suite) -> Run:
    args = suite.args
    run = new_run(suite, "a", "kill storm", args.samples)
    start_roles(run, routers=2, double_busiest=True)
    start_producer(run, args.rate)
    duration = stream_seconds(run, args.rate)
    moments = sorted(suite.rng.uniform(0.08, 0.92) * duration for _ in range(args.kills))
    victims = [n for n, r in run.sup.roles.items() if r.kind in ("router", "worker")]
    killed: list[str] = []
    for moment in moments:
        sleep_until(run.stream_at + moment)
        alive = [n for n in victims if run.sup.roles[n].alive()] or victims
        victim = suite.rng.choice(alive)
        if run.sup.kill(victim, pause_s=suite.rng.uniform(1.0, 3.0)):
            killed.append(victim)
            say(f"   SIGKILL {victim} at {time.monotonic() - run.stream_at:.0f} s of the stream "
                f"({len(killed)}/{args.kills})")
    run.notes.append(f"{len(killed)} SIGKILLs: {dict(Counter(killed))}")
    sleep_until(run.stream_at + duration)
    wait_answered(run, args.deadline_s, "after the kill storm")
    return run


def _outage(suite: Suite, key: str, title: str, outage: tuple[Callable[[], object], Callable[[], object]]) -> Run:
    """A steady stream with a service down for --outage-s in the middle: `outage` takes it down, then up."""
    args = suite.args
    run = new_run(suite, key, title, args.other_samples)
    start_roles(run)
    rate = len(run.records) / (args.outage_s + 30)
    start_producer(run, rate)
    time.sleep(10)
    take_down, bring_up = outage
    take_down()
    down = time.monotonic()
    time.sleep(args.outage_s)
    result = bring_up()
    run.notes.append(f"{title}: down {time.monotonic() - down:.0f} s (restart: {result})")
    sleep_until(run.stream_at + stream_seconds(run, rate))
    wait_answered(run, args.deadline_s, f"after the {title}")
    return run


def scenario_outage_redis(suite: Suite) -> Run:
    service = suite.cluster.service
    return _outage(suite, "c-redis", "Redis outage", (lambda: service("stop-redis"), lambda: service("start-redis")))


def scenario_outage_kafka(suite: Suite) -> Run:
    nodes = list(range(1, suite.cluster.nodes + 1))
    return _outage(suite, "c-kafka", "Kafka outage (every node)",
                   (lambda: [suite.cluster.service("kill-broker", str(n)) for n in nodes],
                    lambda: suite.cluster.start_brokers(nodes)))


def scenario_sigterm(suite: Suite) -> Run:
    args = suite.args
    run = into_a_stream(suite, "d", "SIGTERM of every role mid-stream", 0.4)
    say("   SIGTERM to every role")
    codes = run.sup.terminate(60.0)
    run.extra["sigterm_codes"] = codes
    bad = {n: c for n, c in codes.items() if c != 0}
    run.notes.append(f"SIGTERM exit codes: {bad or 'all 0'} ({len(codes)} roles)")
    say(f"   exit codes: {codes}")
    time.sleep(3)
    run.sup.resume()
    missing = run.sup.wait_started([n for n, r in run.sup.roles.items() if r.kind != "producer"])
    if missing:
        run.notes.append(f"after the restart, no 'stage started' from {missing}")
    wait_answered(run, args.deadline_s, "after restarting every role")
    return run


def scenario_failover(suite: Suite) -> Run:
    args = suite.args
    run = into_a_stream(suite, "e", "broker failover (leader of PREFIX.edge partition 0)", 0.25)
    node = leader_of(suite.cluster.kafka, f"{run.prefix}.edge", 0)
    if node is None or suite.cluster.nodes < 3:
        run.notes.append(f"no failover: leader {node}, {suite.cluster.nodes} node(s)")
    else:
        suite.cluster.service("kill-broker", str(node))
        time.sleep(20)
        codes = suite.cluster.start_brokers([node])
        run.notes.append(f"node {node} (leader of {run.prefix}.edge/0) SIGKILLed for 20 s, "
                         f"start-broker rc {codes[0]}")
    sleep_until(run.stream_at + stream_seconds(run, STEADY_RATE))
    wait_answered(run, args.deadline_s, "after the failover")
    return run


def scenario_zombie(suite: Suite) -> Run:
    run = into_a_stream(suite, "f", "zombie worker resumed beside its successor", 0.25)
    tier = busiest_tier(suite)
    zombie = run.sup.roles[f"worker-{tier}-1"]
    assert zombie.child is not None
    zombie.child.send(signal.SIGSTOP)
    say(f"   SIGSTOP worker-{tier}-1; a successor with its instance id takes over")
    successor = f"worker-{tier}-1-successor"
    run.sup.add(Role(successor, "worker", worker_build(run, tier, f"{tier}-1"), run.folder / f"{successor}.log"))
    run.sup.wait_started([successor])
    time.sleep(15)  # the successor serves; the zombie's group session has expired
    zombie.expected = True  # its exit (fenced) is the point: never restarted, since a restart would fence
    zombie.child.send(signal.SIGCONT)
    say(f"   SIGCONT worker-{tier}-1 (the zombie)")
    try:
        code: int | str = zombie.child.wait(120)
    except subprocess.TimeoutExpired:
        code = "still running after 120 s"
    fenced = "fenced" in zombie.log_text()
    run.extra.update({"zombie_exit": code, "zombie_said_fenced": fenced,
                      "successor_alive": run.sup.roles[successor].alive()})
    run.notes.append(f"zombie exit {code} (said fenced: {fenced}); successor alive: "
                     f"{run.sup.roles[successor].alive()} ({run.sup.roles[successor].starts} start(s))")
    sleep_until(run.stream_at + stream_seconds(run, STEADY_RATE))
    wait_answered(run, suite.args.deadline_s, "after the zombie")
    return run


HOUR_S = 3600.0


def scenario_fast_clocks(suite: Suite) -> Run:
    from kafka import KafkaProducer

    run = new_run(suite, "g", "producer clocks ahead (2 h; year 3000; 1e300)", suite.args.other_samples)
    start_roles(run)
    absurd = [Hostile(f"produced_at {label}", encode({"id": f"{run.prefix}-clock-{label}", "text": "fun",
                                                      "produced_at": when}), f"{run.prefix}-clock-{label}")
              for label, when in (("year-3000", 32503680000.0), ("1e300", 1e300), ("negative", -1.0))]
    producer = KafkaProducer(bootstrap_servers=suite.cluster.kafka, acks="all")
    sent, ahead = [], 0
    run.stream_at = time.monotonic()
    try:
        for n, record in enumerate(run.records):
            skew = 2 * HOUR_S if n % 3 == 0 else 0.0  # a third from a producer host whose clock is 2 h fast
            ahead += skew > 0
            send_raw(producer, f"{run.prefix}.samples", record["id"],
                     encode({**record, "produced_at": time.time() + skew}))
            if n % 50 == 25 and absurd:
                sent.append(send_hostile(run, producer, absurd.pop()))
            time.sleep(1 / STEADY_RATE)
        sent += [send_hostile(run, producer, item) for item in absurd]
    finally:
        producer.close()
    run.extra["sent"] = sent
    run.notes.append(f"{ahead} of {len(run.records)} valid samples stamped 2 h ahead")
    wait_answered(run, suite.args.deadline_s, "samples from fast clocks")
    return run


def scenario_lost_centroids(suite: Suite) -> Run:
    import redis

    run = into_a_stream(suite, "h", "Redis FLUSHALL mid-stream, then seed --only-missing", 0.3)
    client = redis.Redis.from_url(suite.cluster.redis)
    client.flushall()
    client.close()
    flushed = time.monotonic()
    say("   Redis FLUSHALL; the router should wait, dead-lettering nothing")
    time.sleep(15)
    seeded = subprocess.run([DIMEE, "seed", "--only-missing", "--workdir", str(suite.workdir)], env=run.sup.env,
                            capture_output=True, text=True, timeout=120)
    run.notes.append(f"FLUSHALL, then after {time.monotonic() - flushed:.0f} s `dimee seed --only-missing`: rc "
                     f"{seeded.returncode}: {(seeded.stdout or seeded.stderr).strip()[:160]}")
    sleep_until(run.stream_at + stream_seconds(run, STEADY_RATE))
    wait_answered(run, suite.args.deadline_s, "after the centroids were restored")
    return run


def _long_kafka_outage(suite: Suite, rate: float) -> Run:
    """(c-kafka) with the outage longer than the producer's flush timeout, under `dimee produce` at `rate`
    samples/s for the outage and 30 s more: what the client still holds is delivered once, never sent again."""
    nodes = list(range(1, suite.cluster.nodes + 1))
    outage_s = max(suite.args.outage_s, 45.0)
    count = round(rate * (outage_s + 30))
    run = new_run(suite, f"i-{rate:g}", f"Kafka down {outage_s:.0f} s under dimee produce at {rate:g}/s", count)
    start_roles(run)
    start_producer(run, rate)
    time.sleep(10)
    for node in nodes:
        suite.cluster.service("kill-broker", str(node))
    time.sleep(outage_s)
    codes = suite.cluster.start_brokers(nodes)
    run.notes.append(f"every node down {outage_s:.0f} s (start-broker rc {codes})")
    sleep_until(run.stream_at + stream_seconds(run, rate))
    wait_answered(run, suite.args.deadline_s, "after the long outage")
    return run


def scenario_long_kafka_outage_4(suite: Suite) -> Run:
    return _long_kafka_outage(suite, 4.0)


def scenario_long_kafka_outage_40(suite: Suite) -> Run:
    return _long_kafka_outage(suite, 40.0)


def _produced_after(path: Path, moment: float) -> bool:
    """Whether the sink holds a prediction of a sample produced after `moment` (wall clock)."""
    if not path.exists():
        return False
    for line in path.read_text(errors="replace").splitlines():
        produced = loads(line.encode()).get("timings", {}).get("produced_at") if line.strip() else None
        if isinstance(produced, float | int) and produced > moment:
            return True
    return False


def _blocked_after_kill(run: Run, name: str) -> float | None:
    """SIGKILL a role, restart it at once, and time until a sample produced after the kill is answered: the
    restart, plus however long the killed one's open transaction held read_committed readers back (None:
    none answered within 120 s)."""
    killed_wall, killed = time.time(), time.monotonic()
    run.sup.kill(name, pause_s=0.5)
    while time.monotonic() < killed + 120:
        if _produced_after(run.sink_path, killed_wall):
            return round(time.monotonic() - killed, 1)
        time.sleep(0.2)
    return None


def scenario_restart_ids(suite: Suite) -> Run:
    run = into_a_stream(suite, "j", "router SIGKILLed, restarted with its id, then with a new one", 0.1)
    same = _blocked_after_kill(run, "router-1")
    router = run.sup.roles["router-1"]
    build = router.build

    def with_a_new_id(role: Role) -> list[str]:
        args = build(role)
        at = args.index("--instance-id") + 1
        return [*args[:at], f"router-1-new-{role.starts}", *args[at + 1:]]

    router.build = with_a_new_id
    time.sleep(5)
    new = _blocked_after_kill(run, "router-1")
    run.extra.update({"blocked_s_same_id": same, "blocked_s_new_id": new})
    run.notes.append(f"a sample produced after a SIGKILL of the router was answered {same} s after it when the "
                     f"router restarted with its instance id, {new} s with a new id (the transaction timeout "
                     f"bounds it)")
    sleep_until(run.stream_at + stream_seconds(run, STEADY_RATE))
    wait_answered(run, suite.args.deadline_s, "after the router restarts")
    return run


def scenario_hostile(suite: Suite) -> Run:
    from kafka import KafkaProducer

    run = new_run(suite, "b", "hostile input", suite.args.hostile_valid)
    start_roles(run)
    hostile = [*malformed_samples(run.prefix), *hostile_samples(run.prefix, run.records[0]),
               *hostile_routed(run.prefix)]
    # The ~900 KB records last: one that wedges a stage must not hide what the others do.
    hostile.sort(key=lambda h: len(h.value or b"") > 500_000)
    skip = [k.strip() for k in suite.args.skip_hostile.split(",") if k.strip()]
    hostile = [h for h in hostile if not any(k in h.kind for k in skip)]
    producer = KafkaProducer(bootstrap_servers=suite.cluster.kafka, acks="all", max_request_size=1_040_000)
    half, sent = len(run.records) // 2, []
    run.stream_at = time.monotonic()
    try:
        for record in run.records[:half]:
            send_valid(run, producer, record)
            time.sleep(1 / 20)
        valid = iter(run.records[half:])
        for item in hostile:
            sent.append(send_hostile(run, producer, item))
            if (record := next(valid, None)) is not None:
                send_valid(run, producer, record)
            time.sleep(1 / 20)
        for record in valid:
            send_valid(run, producer, record)
            time.sleep(1 / 20)
    finally:
        producer.close()
    say(f"   sent {len(run.records)} valid and {sum(s.error is None for s in sent)} hostile records "
        f"({sum(s.error is not None for s in sent)} refused by the client/broker)")
    run.extra["sent"] = sent
    wait_answered(run, suite.args.deadline_s, "valid samples after the hostile ones")
    return run


SCENARIOS: dict[str, list[Callable[[Suite], Run]]] = {
    "a": [scenario_kill_storm], "b": [scenario_hostile], "c": [scenario_outage_redis, scenario_outage_kafka],
    "d": [scenario_sigterm], "e": [scenario_failover], "f": [scenario_zombie], "g": [scenario_fast_clocks],
    "h": [scenario_lost_centroids], "i": [scenario_long_kafka_outage_4, scenario_long_kafka_outage_40],
    "j": [scenario_restart_ids], "k": [scenario_forged_audits],
    "l": [scenario_two_pipelines, scenario_second_pipeline], "m": [scenario_damaged_control],
    "n": [scenario_redis_oom],
}
