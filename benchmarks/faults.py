"""dimee's fault-injection suite: every role a separate `dimee` process on the real Kafka cluster and Redis,
under the faults a deployment meets. It reports figures and asserts nothing; it exits 0 when it completed,
whatever it found (non-zero only for its own errors).

Scenarios, each on its own topic prefix:
  a  kill storm: a steady stream, two adaptive routers, one worker per tier (two for the busiest), a sink;
     random SIGKILLs of routers and workers spread over the stream, each restarted after a short pause;
  b  hostile input: malformed and hostile records, sent raw with kafka-python, interleaved with valid ones,
     plus corrupt routed messages on a tier topic; each must reach the dead-letter topic with a reason;
  c  outages: Redis stopped mid-stream, then (c-kafka) every Kafka node killed mid-stream, each for
     --outage-s, then started again;
  d  SIGTERM of every role mid-stream (exit codes, expected 0), then all restarted to finish the stream;
  e  broker failover: the leader of PREFIX.edge partition 0 SIGKILLed, started again ~20 s later;
  f  a zombie: the busiest tier's worker SIGSTOPped, a successor with its instance id started, the zombie
     resumed (SIGCONT) while the successor serves: the zombie must stop as fenced, the successor go on;
  g  fast clocks: samples whose produced_at is 2 h ahead (to be answered), in the year 3000 or 1e300 (to be
     dead-lettered), interleaved with the others;
  h  lost centroid state: Redis FLUSHALL mid-stream, then `dimee seed --only-missing` 15 s later;
  i  `dimee produce` through an outage of every Kafka node longer than its 30 s flush timeout;
  j  a router SIGKILLed mid-stream and restarted with its instance id, then again with a new one: how long
     read_committed readers wait for the transaction the killed one left open.

A small supervisor restarts any role that exits without the suite asking it to, and counts it. Per scenario
it measures: produced, delivered unique (a read_committed reader of PREFIX.predictions), lost, duplicates
before dedupe, dead letters by reason, malformed records accounted for, the centroid counts in Redis against
the ids the adaptive routers routed, unexpected exits, stalls (a deadline passed with samples unanswered)
and wall time. Needs DIMEE_TEST_KAFKA / DIMEE_TEST_REDIS / DIMEE_TEST_SERVICES_SCRIPT from
deploy/local-services.sh: `make faults` runs it under `deploy/local-services.sh run`.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # tests.support.helpers: the tiny workdir

DIMEE = str(Path(sys.executable).parent / "dimee")
TIERS = ("mobile", "edge", "cloud")
INJECTOR = "faults-injector"  # the router name on messages this suite writes to a tier topic itself
T0 = time.monotonic()


def say(message: str) -> None:
    print(f"[faults {time.monotonic() - T0:7.1f}s] {message}", flush=True)


# ---------------------------------------------------------------------------------------------------------
# Services


@dataclass(frozen=True)
class Cluster:
    kafka: list[str]
    redis: str
    services: str
    nodes: int

    @classmethod
    def from_env(cls) -> Cluster:
        missing = [n for n in ("DIMEE_TEST_KAFKA", "DIMEE_TEST_REDIS", "DIMEE_TEST_SERVICES_SCRIPT")
                   if not os.environ.get(n)]
        if missing:
            sys.exit(f"faults: {', '.join(missing)} not set: run under `bash deploy/local-services.sh run -- ...`")
        return cls(os.environ["DIMEE_TEST_KAFKA"].split(","), os.environ["DIMEE_TEST_REDIS"],
                   os.environ["DIMEE_TEST_SERVICES_SCRIPT"], int(os.environ.get("DIMEE_TEST_KAFKA_NODES") or 1))

    def service(self, *command: str, timeout_s: float = 240.0) -> int:
        """deploy/local-services.sh COMMAND; its return code (never raises)."""
        say(f"   services: {' '.join(command)}")
        try:
            return subprocess.run(["bash", self.services, *command], timeout=timeout_s,
                                  stdout=subprocess.DEVNULL).returncode
        except subprocess.TimeoutExpired:
            return -1

    def start_brokers(self, nodes: list[int]) -> list[int]:
        """Start nodes together (a KRaft node waits for its quorum, so one at a time would never be ready)."""
        procs = [subprocess.Popen(["bash", self.services, "start-broker", str(n)], stdout=subprocess.DEVNULL)
                 for n in nodes]
        say(f"   services: start-broker {' '.join(map(str, nodes))}")
        codes = []
        for proc in procs:
            try:
                codes.append(proc.wait(timeout=240))
            except subprocess.TimeoutExpired:
                proc.kill()
                codes.append(-1)
        return codes


# ---------------------------------------------------------------------------------------------------------
# Supervisor: roles as OS processes, restarted when they exit unexpectedly


@dataclass
class Exit:
    role: str
    code: int | None
    at_s: float
    excerpt: list[str]


@dataclass
class Role:
    name: str
    kind: str  # router, worker, sink, producer
    build: Callable[[Role], list[str]]  # the dimee arguments, built at every (re)start
    log: Path
    proc: subprocess.Popen | None = None
    starts: int = 0
    offset: int = 0  # where this incarnation's log begins
    expected: bool = False  # the suite stopped it
    handled: bool = True
    finished: bool = False  # a producer that sent everything (exit 0)
    restart_at: float | None = None
    failures: int = 0

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_text(self) -> str:
        if not self.log.exists():
            return ""
        with self.log.open("rb") as handle:
            handle.seek(self.offset)
            return handle.read().decode("utf-8", "replace")


def excerpt(role: Role, lines: int = 2) -> list[str]:
    """The last lines of a role's log: for a crash, the traceback's exception line."""
    text = [line.strip() for line in role.log_text().splitlines() if line.strip(" \t^~")]
    return [line[:300] for line in text[-lines:]]


class Supervisor:
    def __init__(self, env: dict[str, str]) -> None:
        self.env, self.started = env, time.monotonic()
        self.roles: dict[str, Role] = {}
        self.exits: list[Exit] = []
        self.kills = 0
        self.paused = False
        self.lock = threading.RLock()
        self.halt = threading.Event()
        self.thread = threading.Thread(target=self._watch, daemon=True)
        self.thread.start()

    def add(self, role: Role) -> None:
        with self.lock:
            self.roles[role.name] = role
            self._start(role)

    def _start(self, role: Role) -> None:
        role.offset = role.log.stat().st_size if role.log.exists() else 0
        args = role.build(role)
        with role.log.open("ab") as log:
            role.proc = subprocess.Popen([DIMEE, *args], env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, start_new_session=True)
        role.starts += 1
        role.expected, role.handled, role.restart_at = False, False, None

    def _watch(self) -> None:
        while not self.halt.wait(0.3):
            with self.lock:
                for role in self.roles.values():
                    self._check(role)

    def _check(self, role: Role) -> None:
        if role.proc is not None and not role.handled and role.proc.poll() is not None:
            role.handled = True
            self._exited(role, role.proc.returncode)
        if role.restart_at is not None and time.monotonic() >= role.restart_at and not self.paused:
            try:
                self._start(role)
            except Exception as exc:  # e.g. the producer's remainder could not be read: try again later
                say(f"   ! could not restart {role.name}: {exc}")
                role.restart_at = time.monotonic() + 5.0

    def _exited(self, role: Role, code: int | None) -> None:
        if role.expected:
            return
        if role.kind == "producer" and code == 0:
            role.finished = True
            return
        role.failures += 1
        lines = excerpt(role)
        self.exits.append(Exit(role.name, code, round(time.monotonic() - self.started, 1), lines))
        say(f"   ! {role.name} exited unexpectedly (code {code}): {lines[-1] if lines else ''}")
        role.restart_at = time.monotonic() + min(2.0 * 2 ** (role.failures - 1), 20.0)

    def kill(self, name: str, pause_s: float) -> bool:
        """SIGKILL a live role; the watcher restarts it after pause_s."""
        with self.lock:
            role = self.roles[name]
            if not role.alive():
                return False
            role.expected = True
            role.proc.kill()  # type: ignore[union-attr]
            role.proc.wait(10)  # type: ignore[union-attr]
            role.handled, role.restart_at = True, time.monotonic() + pause_s
            self.kills += 1
            return True

    def terminate(self, timeout_s: float = 60.0) -> dict[str, int | str]:
        """SIGTERM every live role (no restarts until resume); their exit codes."""
        with self.lock:
            self.paused = True
            live = [role for role in self.roles.values() if role.alive()]
            for role in self.roles.values():
                role.restart_at = None
            for role in live:
                role.expected = True
                role.proc.send_signal(signal.SIGTERM)  # type: ignore[union-attr]
        codes: dict[str, int | str] = {}
        deadline = time.monotonic() + timeout_s
        for role in live:
            try:
                codes[role.name] = role.proc.wait(max(0.1, deadline - time.monotonic()))  # type: ignore[union-attr]
            except subprocess.TimeoutExpired:
                role.proc.kill()  # type: ignore[union-attr]
                role.proc.wait()  # type: ignore[union-attr]
                codes[role.name] = f"no exit in {timeout_s:.0f}s (SIGKILLed)"
        return codes

    def resume(self) -> None:
        """Start again every role that is down (a finished producer stays down)."""
        with self.lock:
            self.paused = False
            for role in self.roles.values():
                if not role.finished and not role.alive():
                    self._start(role)

    def shutdown(self) -> dict[str, int | str]:
        codes = self.terminate(45.0)
        self.halt.set()
        self.thread.join(5)
        return codes

    def wait_started(self, names: list[str], timeout_s: float = 180.0) -> list[str]:
        """Wait for 'stage started' in each role's current log; the roles that never logged it."""
        deadline = time.monotonic() + timeout_s
        pending = list(names)
        while pending and time.monotonic() < deadline:
            pending = [n for n in pending if "stage started" not in self.roles[n].log_text()]
            time.sleep(0.5)
        return pending


# ---------------------------------------------------------------------------------------------------------
# Reading what happened: topics, the sink file, Redis


def read_topic(kafka: list[str], topic: str, committed: bool = True, limit_s: float = 90.0) -> list:
    """Every record of a topic from the beginning (read_committed by default), until the reader reaches the
    end offsets or sees nothing new for 5 s."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=kafka, group_id=None, enable_auto_commit=False,
                             isolation_level="read_committed" if committed else "read_uncommitted",
                             max_partition_fetch_bytes=4 * 1024 * 1024, fetch_max_bytes=16 * 1024 * 1024)
    try:
        deadline = time.monotonic() + limit_s
        while not consumer.partitions_for_topic(topic) and time.monotonic() < min(deadline, time.monotonic() + 15):
            time.sleep(0.5)
        partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or [])]
        if not partitions:
            return []
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        return _drain(consumer, partitions, deadline)
    finally:
        consumer.close()


def _drain(consumer, partitions: list, deadline: float) -> list:
    ends = consumer.end_offsets(partitions)
    records, last = [], time.monotonic()
    while time.monotonic() < deadline and time.monotonic() - last < 5.0:
        for batch in consumer.poll(timeout_ms=500).values():
            records.extend(batch)
            last = time.monotonic()
        if all(consumer.position(tp) >= ends[tp] for tp in partitions):
            break
    return records


def loads(value: bytes | None) -> dict:
    try:
        data = json.loads(value) if value is not None else None
    except (ValueError, RecursionError):  # hostile payloads: not JSON, not UTF-8, nested too deep
        return {}
    return data if isinstance(data, dict) else {}


def sink_ids(path: Path) -> set[str]:
    """Ids in the sink's JSONL (a torn last line is skipped)."""
    if not path.exists():
        return set()
    ids = set()
    for line in path.read_text(errors="replace").splitlines():
        data = loads(line.encode()) if line.strip() else {}
        if "id" in data:
            ids.add(data["id"])
    return ids


def centroid_delta(redis_url: str, state_id: str, pool_sizes: list[int]) -> int | None:
    """sum(count) of the pools in Redis minus the calibration pool sizes: the ids that moved a centroid."""
    import redis

    client = redis.Redis.from_url(redis_url, socket_timeout=5, socket_connect_timeout=3)
    try:
        namespace = f"dimee:{{{state_id}}}"
        pools = client.hget(f"{namespace}:meta", "pools")
        if pools is None:
            return None
        counts = [int(client.hget(f"{namespace}:pool:{k}", "count") or 0) for k in range(int(pools))]
        return sum(counts) - sum(pool_sizes)
    except redis.RedisError:
        return None
    finally:
        client.close()


def reason_of(error: str) -> str:
    """A dead letter's error with its numbers and quoted values blanked, so equal causes count together."""
    text = re.sub(r"'[^']*'|\"[^\"]*\"", "…", error)
    return re.sub(r"\d+", "N", text)[:90]


@dataclass
class Observed:
    predictions: Counter
    samples: set[str]  # ids that reached PREFIX.samples
    routed: set[str]
    letters: list[dict]
    centroids: int | None


def observe(suite: Suite, prefix: str) -> Observed:
    kafka = suite.cluster.kafka
    predictions = Counter(loads(r.value).get("id") for r in read_topic(kafka, f"{prefix}.predictions"))
    predictions.pop(None, None)
    routed = set()
    for tier in TIERS:
        for record in read_topic(kafka, f"{prefix}.{tier}"):
            data = loads(record.value)
            if data.get("router") not in (None, INJECTOR) and not data.get("hops"):
                routed.add(data.get("id"))
    letters = [loads(r.value) for r in read_topic(kafka, f"{prefix}.dead-letter")]
    samples = {loads(r.value).get("id") for r in read_topic(kafka, f"{prefix}.samples", committed=False)}
    return Observed(predictions, samples, routed, letters, centroid_delta(suite.cluster.redis, suite.state_id,
                                                                 suite.pool_sizes))


# ---------------------------------------------------------------------------------------------------------
# A scenario run: its prefix, roles, stream and findings


@dataclass
class Suite:
    cluster: Cluster
    workdir: Path
    folder: Path
    state_id: str
    pool_sizes: list[int]
    args: argparse.Namespace
    rng: random.Random
    runs: list = field(default_factory=list)  # every Run started, so a failed scenario's roles are stopped


@dataclass
class Run:
    suite: Suite
    key: str
    title: str
    prefix: str
    folder: Path
    sup: Supervisor
    records: list[dict]
    notes: list[str] = field(default_factory=list)
    stalls: list[str] = field(default_factory=list)
    extra: dict = field(default_factory=dict)
    started: float = field(default_factory=time.monotonic)
    stream_at: float = 0.0  # when the producer started

    @property
    def sink_path(self) -> Path:
        return self.folder / "dimee.predictions.jsonl"

    def valid_ids(self) -> list[str]:
        return [r["id"] for r in self.records]


def new_run(suite: Suite, key: str, title: str, count: int) -> Run:
    from tests.support.helpers import stream_records

    prefix = f"faults-{key}-{uuid.uuid4().hex[:6]}"
    folder = suite.folder / prefix
    folder.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    env.update({"DIMEE_BROKER": "kafka://" + ",".join(suite.cluster.kafka), "DIMEE_STATE": suite.cluster.redis,
                "DIMEE_TOPIC_PREFIX": prefix, "DIMEE_GUARANTEE": suite.args.guarantee,
                "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": "1"})
    records = stream_records(count, seed=suite.rng.randrange(10_000), prefix=prefix)
    say(f"({key}) {title}: prefix {prefix}, {count} valid samples, logs in {folder}")
    run = Run(suite, key, title, prefix, folder, Supervisor(env), records)
    suite.runs.append(run)
    return run


def router_build(run: Run, instance: str) -> Callable[[Role], list[str]]:
    def build(role: Role) -> list[str]:
        reseed = ["--reseed"] if instance == "router-1" and role.starts == 0 else []  # restarts keep Redis
        return ["route", "--workdir", str(run.suite.workdir), "--adaptive", *reseed,
                "--instance-id", instance, "--max-batch", "16"]
    return build


def worker_build(run: Run, tier: str, instance: str) -> Callable[[Role], list[str]]:
    def build(_role: Role) -> list[str]:
        return ["work", "--tier", tier, "--workdir", str(run.suite.workdir), "--instance-id", instance,
                "--max-batch", "16"]
    return build


def busiest_tier(suite: Suite) -> str:
    return TIERS[max(range(len(TIERS)), key=lambda k: suite.pool_sizes[k] if k < len(suite.pool_sizes) else 0)]


def start_roles(run: Run, routers: int = 1, double_busiest: bool = False) -> None:
    """Adaptive routers (the first seeds Redis and starts alone), a worker per tier, a sink."""
    sup = run.sup
    sup.add(Role("router-1", "router", router_build(run, "router-1"), run.folder / "router-1.log"))
    missing = sup.wait_started(["router-1"])
    names = []
    for k in range(2, routers + 1):
        names.append(f"router-{k}")
        sup.add(Role(names[-1], "router", router_build(run, names[-1]), run.folder / f"{names[-1]}.log"))
    for tier in TIERS:
        copies = 2 if double_busiest and tier == busiest_tier(run.suite) else 1
        for k in range(1, copies + 1):
            names.append(f"worker-{tier}-{k}")
            sup.add(Role(names[-1], "worker", worker_build(run, tier, f"{tier}-{k}"), run.folder / f"{names[-1]}.log"))
    sup.add(Role("sink", "sink", lambda _r: ["sink", "--out", str(run.sink_path)], run.folder / "sink.log"))
    missing += sup.wait_started([*names, "sink"])
    if missing:
        run.notes.append(f"did not log 'stage started' in 180 s: {', '.join(missing)}")
    say(f"   roles up: router-1, {', '.join(names)}, sink")


def remainder(run: Run) -> list[dict]:
    """The valid records not yet in the samples topic (what a restarted producer still has to send)."""
    sent = {loads(r.value).get("id") for r in read_topic(run.suite.cluster.kafka, f"{run.prefix}.samples",
                                                         committed=False, limit_s=60)}
    return [r for r in run.records if r["id"] not in sent]


def start_producer(run: Run, rate: float) -> None:
    def build(role: Role) -> list[str]:
        rows = run.records if role.starts == 0 else remainder(run)
        source = run.folder / f"source-{role.starts}.jsonl"
        source.write_text("".join(json.dumps(r) + "\n" for r in rows))
        if role.starts:
            say(f"   producer restarted with the {len(rows)} samples not yet in {run.prefix}.samples")
        return ["produce", "--source", str(source), "--id-col", "id", "--rate", f"{rate:g}"]

    run.stream_at = time.monotonic()
    run.sup.add(Role("producer", "producer", build, run.folder / "producer.log"))


def wait_answered(run: Run, deadline_s: float, what: str) -> bool:
    """Until every valid id is in the sink's file; a stall if deadline_s passes first."""
    ids = set(run.valid_ids())
    deadline, report = time.monotonic() + deadline_s, time.monotonic() + 10
    while True:
        missing = ids - sink_ids(run.sink_path)
        if not missing:
            return True
        if time.monotonic() > deadline:
            run.stalls.append(f"{what}: {len(missing)} of {len(ids)} samples unanswered after {deadline_s:.0f} s")
            say(f"   STALL: {run.stalls[-1]}")
            return False
        if time.monotonic() > report:
            say(f"   ({run.key}) answered {len(ids) - len(missing)}/{len(ids)}, "
                f"unexpected exits {len(run.sup.exits)}")
            report = time.monotonic() + 10
        time.sleep(1.0)


def sleep_until(moment: float) -> None:
    time.sleep(max(0.0, moment - time.monotonic()))


def stream_seconds(run: Run, rate: float) -> float:
    return len(run.records) / rate


# ---------------------------------------------------------------------------------------------------------
# Scenarios


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


STEADY_RATE = 15.0  # samples/s of the SIGTERM and failover scenarios


def _into_a_stream(suite: Suite, key: str, title: str, fraction: float) -> Run:
    """Every role up and a stream of --other-samples at STEADY_RATE, `fraction` of the way through."""
    run = new_run(suite, key, title, suite.args.other_samples)
    start_roles(run)
    start_producer(run, STEADY_RATE)
    time.sleep(fraction * stream_seconds(run, STEADY_RATE))
    return run


def scenario_sigterm(suite: Suite) -> Run:
    args = suite.args
    run = _into_a_stream(suite, "d", "SIGTERM of every role mid-stream", 0.4)
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


def leader_of(kafka: list[str], topic: str, partition: int) -> int | None:
    from kafka import KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=kafka)
    try:
        described = admin.describe_topics([topic])[0]
        return next((p["leader_id"] for p in described["partitions"] if p["partition_index"] == partition), None)
    finally:
        admin.close()


def scenario_failover(suite: Suite) -> Run:
    args = suite.args
    run = _into_a_stream(suite, "e", "broker failover (leader of PREFIX.edge partition 0)", 0.25)
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


# ---------------------------------------------------------------------------------------------------------
# (f)-(j): exactly-once at the edges


def scenario_zombie(suite: Suite) -> Run:
    run = _into_a_stream(suite, "f", "zombie worker resumed beside its successor", 0.25)
    tier = busiest_tier(suite)
    zombie = run.sup.roles[f"worker-{tier}-1"]
    assert zombie.proc is not None
    zombie.proc.send_signal(signal.SIGSTOP)
    say(f"   SIGSTOP worker-{tier}-1; a successor with its instance id takes over")
    successor = f"worker-{tier}-1-successor"
    run.sup.add(Role(successor, "worker", worker_build(run, tier, f"{tier}-1"), run.folder / f"{successor}.log"))
    run.sup.wait_started([successor])
    time.sleep(15)  # the successor serves; the zombie's group session has expired
    zombie.expected = True  # its exit (fenced) is the point: never restarted, since a restart would fence
    zombie.proc.send_signal(signal.SIGCONT)
    say(f"   SIGCONT worker-{tier}-1 (the zombie)")
    try:
        code: int | str = zombie.proc.wait(timeout=120)
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

    run = _into_a_stream(suite, "h", "Redis FLUSHALL mid-stream, then seed --only-missing", 0.3)
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


def scenario_long_kafka_outage(suite: Suite) -> Run:
    """(c-kafka) with the outage longer than the producer's flush timeout: what the client still holds is
    delivered once, never sent again."""
    nodes = list(range(1, suite.cluster.nodes + 1))
    outage_s = max(suite.args.outage_s, 45.0)
    args = suite.args
    run = new_run(suite, "i", f"Kafka down {outage_s:.0f} s under dimee produce", args.other_samples)
    start_roles(run)
    rate = len(run.records) / (outage_s + 30)
    start_producer(run, rate)
    time.sleep(10)
    for node in nodes:
        suite.cluster.service("kill-broker", str(node))
    time.sleep(outage_s)
    codes = suite.cluster.start_brokers(nodes)
    run.notes.append(f"every node down {outage_s:.0f} s (start-broker rc {codes})")
    sleep_until(run.stream_at + stream_seconds(run, rate))
    wait_answered(run, args.deadline_s, "after the long outage")
    return run


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
    run = _into_a_stream(suite, "j", "router SIGKILLed, restarted with its id, then with a new one", 0.1)
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


# ---------------------------------------------------------------------------------------------------------
# (b) hostile input


@dataclass(frozen=True)
class Hostile:
    kind: str
    value: bytes | None
    key: str | None
    expect: str = "dead-letter"  # or "answer-or-dead-letter": schema-valid but hostile
    topic: str = "samples"
    answer_id: str | None = None  # the id a prediction would carry
    answers_needed: int = 1  # predictions of answer_id that mean this record was answered


def encode(body: object) -> bytes:
    return json.dumps(body).encode()  # json writes NaN and Infinity as the tokens NaN / Infinity


DROP = object()  # a field left out of a sample


def malformed_samples(prefix: str) -> list[Hostile]:
    """Records that break the sample contract: each must be dead-lettered."""
    def key(kind: str) -> str:
        return f"{prefix}-bad-{kind}"

    def sample(kind: str, **fields) -> Hostile:
        body = {"id": key(kind), "text": "the movie was fun", **fields}
        return Hostile(kind, encode({k: v for k, v in body.items() if v is not DROP}), key(kind))

    return [
        Hostile("bad-json", b'{"id": "x", "text": the movie}', None),
        Hostile("truncated-json", b'{"id": "' + key("truncated-json").encode() + b'", "text": "fun"', None),
        Hostile("not-utf8", b"\xff\xfe\xfa not utf-8", key("not-utf8")),
        Hostile("not-utf8-900kb", bytes([0xFF, 0xFE, 0xC3, 0x28]) * 225_000, key("not-utf8-900kb")),
        Hostile("tombstone (null value)", None, key("tombstone")),
        Hostile("empty payload", b"", key("empty")),
        Hostile("json null", b"null", key("json-null")),
        Hostile("json array", b'[{"id": "a", "text": "fun"}]', key("json-array")),
        Hostile("json number", b"42", key("json-number")),
        Hostile("json string", b'"the movie was fun"', key("json-string")),
        Hostile("utf-8 BOM before JSON", b"\xef\xbb\xbf" + encode({"id": key("bom"), "text": "fun"}), key("bom")),
        Hostile("empty object", b"{}", key("empty-object")),
        sample("missing-id", id=DROP),
        sample("missing-text", text=DROP),
        sample("id-number", id=12345),
        sample("id-empty", id=""),
        Hostile("id-129-chars", encode({"id": "i" * 129, "text": "fun"}), "i" * 129),
        sample("text-number", text=42),
        sample("text-list", text=["the", "movie"]),
        sample("text-blank", text=" \t\n "),
        sample("text-900kb", text="fun " * 225_000),
        sample("text-pair-number", text_pair=7),
        sample("label-string", label="positive"),
        sample("label-float", label=0.5),
        sample("produced-at-string", produced_at="yesterday"),
        sample("produced-at-nan", produced_at=float("nan")),
        sample("produced-at-inf", produced_at=float("inf")),
        sample("v-2", v=2),
        sample("extra-field", surprise=True),
        sample("meta-not-object", meta="not an object"),
    ]


def hostile_samples(prefix: str, duplicate_of: dict) -> list[Hostile]:
    """Schema-valid but hostile samples: answered or dead-lettered, never lost, never a crash. (A reused id
    with a different text is a conflict: it must be dead-lettered.)"""
    def sample(kind: str, sample_id: str | None = None, **fields) -> Hostile:
        sample_id = sample_id or f"{prefix}-odd-{kind}"
        body = {"id": sample_id, "text": "the movie was fun", **fields}
        return Hostile(kind, encode(body), sample_id, "answer-or-dead-letter", answer_id=sample_id)

    deep_id = f"{prefix}-odd-meta-deep"
    deep = f'{{"id": "{deep_id}", "text": "fun", "meta": ' + '{"a": ' * 5000 + "1" + "}" * 5000 + "}"
    reused = {"id": duplicate_of["id"], "text": "a different text for a reused id", "label": 1}
    return [
        sample("label-huge-int", label=10**30),
        sample("label-negative", label=-1),
        sample("meta-900kb", meta={"blob": "x" * 900_000}),
        Hostile("meta-nested-5000-deep", deep.encode(), deep_id, "answer-or-dead-letter", answer_id=deep_id),
        sample("id-unicode", sample_id=f"{prefix}-ид-映画-🙂"),
        sample("id-control-chars", sample_id=f"{prefix}-ctl-\x00\x1b[31m\n\t"),
        sample("text-lone-surrogate", text="fun \ud800 movie"),
        sample("text-nul-chars", text="\x00\x00 fun"),
        sample("text-at-limit-10000", text=("fun " * 2500)[:10_000]),
        Hostile("duplicate id, different text", encode(reused), duplicate_of["id"], answer_id=duplicate_of["id"],
                answers_needed=2),
    ]


def hostile_routed(prefix: str) -> list[Hostile]:
    """Routed messages written straight to PREFIX.edge: corrupt escalation state, an unknown tier."""
    def routed(kind: str, expect: str = "dead-letter", **fields) -> Hostile:
        sample_id = f"{prefix}-routed-{kind}"
        body = {"id": sample_id, "text": "the movie was fun", "tier": "edge", "pool": 1,
                "distances": [1.0, 0.5, 2.0], "centroid_version": 0, "router": INJECTOR, **fields}
        return Hostile(kind, encode(body), sample_id, expect, topic="edge", answer_id=sample_id)

    return [
        routed("routed hidden_fp16 of odd length", start_layer=2,
               hidden_fp16=base64.b64encode(b"\x01" * 7).decode()),
        routed("routed hidden_fp16 not base64", start_layer=2, hidden_fp16="%%% not base64 %%%"),
        routed("routed hidden_fp16 wrong width", start_layer=2, hidden_fp16=base64.b64encode(b"\0" * 66).decode()),
        routed("routed unknown tier", tier="fog"),
        routed("routed start_layer>0 without hidden_fp16", "answer-or-dead-letter", start_layer=2),
    ]


@dataclass
class Sent:
    hostile: Hostile
    topic: str
    partition: int | None = None
    offset: int | None = None
    error: str | None = None


def send_raw(producer, topic: str, key: str | None, value: bytes | None) -> tuple[int, int]:
    future = producer.send(topic, key=None if key is None else key.encode("utf-8", "surrogatepass"), value=value)
    meta = future.get(timeout=60)
    return meta.partition, meta.offset


def send_hostile(run: Run, producer, hostile: Hostile) -> Sent:
    topic = f"{run.prefix}.{hostile.topic}"
    try:
        partition, offset = send_raw(producer, topic, hostile.key, hostile.value)
        return Sent(hostile, topic, partition, offset)
    except Exception as exc:  # e.g. the broker refused it: not counted as sent
        return Sent(hostile, topic, error=f"{exc.__class__.__name__}: {exc}"[:200])


def send_valid(run: Run, producer, record: dict) -> None:
    send_raw(producer, f"{run.prefix}.samples", record["id"], encode({**record, "produced_at": time.time()}))


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


def committed_offsets(kafka: list[str], prefix: str) -> dict[tuple[str, int], int]:
    """Where the router's and the edge workers' groups committed: a record past it was never processed."""
    from kafka import KafkaConsumer, TopicPartition

    positions = {}
    for topic, group in ((f"{prefix}.samples", f"{prefix}.router"), (f"{prefix}.edge", f"{prefix}.worker.edge")):
        consumer = KafkaConsumer(bootstrap_servers=kafka, group_id=group, enable_auto_commit=False)
        try:
            for partition in sorted(consumer.partitions_for_topic(topic) or []):
                offset = consumer.committed(TopicPartition(topic, partition))
                positions[(topic, partition)] = -1 if offset is None else offset
        finally:
            consumer.close()
    return positions


def outcome_of(item: Sent, letter: dict | None, answered: bool, committed: dict) -> str:
    if item.error:
        return "refused at send: " + item.error
    if letter:
        return f"dead-lettered by {letter.get('stage')}: {str(letter.get('error', ''))[:120]}"
    if answered:
        return "answered (a prediction)"
    position = committed.get((item.topic, item.partition))
    if position is not None and item.offset is not None and item.offset >= position:
        return (f"never processed: its group's committed offset on {item.topic}/{item.partition} stayed at "
                f"{position}, before this record's {item.offset} (the stage is stuck or crash-looping)")
    return "missing: processed past, but neither dead-lettered nor answered"


def hostile_outcomes(sent: list[Sent], observed: Observed, committed: dict) -> list[dict]:
    """Where each hostile record ended: dead-lettered (matched by topic/partition/offset, else key), answered,
    or nowhere."""
    by_offset = {(d.get("topic"), d.get("partition"), d.get("offset")): d for d in observed.letters}
    by_key: dict = {}
    for letter in observed.letters:
        by_key.setdefault(letter.get("key"), letter)
    rows = []
    for item in sent:
        hostile, letter = item.hostile, None
        if item.error is None:
            letter = by_offset.get((item.topic, item.partition, item.offset)) or (
                by_key.get(hostile.key) if hostile.key is not None else None)
        answered = hostile.answer_id is not None and observed.predictions[hostile.answer_id] >= hostile.answers_needed
        ok = letter is not None or (answered and hostile.expect != "dead-letter")
        rows.append({"kind": hostile.kind, "topic": item.topic, "partition": item.partition, "offset": item.offset,
                     "expect": hostile.expect, "outcome": outcome_of(item, letter, answered, committed),
                     "accounted": ok, "sent": item.error is None})
    return rows


# ---------------------------------------------------------------------------------------------------------
# Figures


def finish(run: Run) -> dict:
    """Stop every role (SIGTERM), read the topics and Redis, and make the scenario's row."""
    codes = run.sup.shutdown()
    bad = {n: c for n, c in codes.items() if c != 0}
    if bad:
        run.notes.append(f"final SIGTERM exit codes not 0: {bad}")
    observed = observe(run.suite, run.prefix)
    row = figures(run, observed)
    row["final_sigterm_codes"] = codes
    return row


def figures(run: Run, observed: Observed) -> dict:
    valid = run.valid_ids()
    lost = [i for i in valid if observed.predictions[i] == 0]
    unique = len(observed.predictions)
    reasons = Counter(f"{d.get('stage')}: {reason_of(str(d.get('error', '')))}" for d in observed.letters)
    sent_records = run.extra.get("sent", [])
    committed = committed_offsets(run.suite.cluster.kafka, run.prefix) if sent_records else {}
    outcomes = hostile_outcomes(sent_records, observed, committed)
    sent = [o for o in outcomes if o["sent"]]
    row = {
        "scenario": run.key, "title": run.title, "prefix": run.prefix, "produced": len(valid),
        "reached_samples_topic": sum(i in observed.samples for i in valid),
        "delivered_unique": unique, "lost": len(lost), "lost_ids": lost[:50],
        "lost_never_in_samples_topic": sum(i not in observed.samples for i in lost),
        "duplicates": sum(observed.predictions.values()) - unique,
        "dead_letters": len(observed.letters), "dead_letter_reasons": dict(reasons.most_common()),
        "malformed_sent": len(sent), "malformed_accounted": sum(o["accounted"] for o in sent),
        "hostile": outcomes, "centroid_delta": observed.centroids, "routed_unique": len(observed.routed),
        "unexpected_exits": len(run.sup.exits), "exits": [vars(e) for e in run.sup.exits],
        "suite_kills": run.sup.kills, "stalls": len(run.stalls), "stall_details": run.stalls,
        "notes": run.notes, "wall_s": round(time.monotonic() - run.started, 1),
    }
    row.update({k: v for k, v in run.extra.items() if k != "sent"})
    return row


def print_row(row: dict) -> None:
    say(f"({row['scenario']}) {row['title']}: produced {row['produced']} ({row['reached_samples_topic']} reached "
        f"the samples topic), delivered unique "
        f"{row['delivered_unique']}, lost {row['lost']}, duplicates {row['duplicates']}, dead letters "
        f"{row['dead_letters']}, centroid Δ {row['centroid_delta']} vs {row['routed_unique']} routed ids, "
        f"unexpected exits {row['unexpected_exits']}, stalls {row['stalls']}, {row['wall_s']} s")
    if row["lost"]:
        print(f"      of the {row['lost']} lost, {row['lost_never_in_samples_topic']} never reached the samples topic "
              f"(lost by the producer); first: {row['lost_ids'][:3]}")
    for reason, count in row["dead_letter_reasons"].items():
        print(f"      dead letter x{count}: {reason}")
    for outcome in row["hostile"]:
        if not outcome["accounted"]:
            print(f"      NOT ACCOUNTED ({outcome['kind']}, expect {outcome['expect']}): {outcome['outcome']}")
    for exit_ in row["exits"]:
        print(f"      exit {exit_['role']} code {exit_['code']} at {exit_['at_s']} s: {' | '.join(exit_['excerpt'])}")
    for note in [*row["notes"], *row["stall_details"]]:
        print(f"      {note}")
    sys.stdout.flush()


HEADER = ("| scenario | produced | reached samples topic | delivered unique | lost | duplicates | dead letters "
          "| malformed accounted | centroid Δ / routed ids | unexpected exits | stalls | wall s |")


def table(rows: list[dict]) -> str:
    lines = [HEADER, "|" + " --- |" * 12]
    for row in rows:
        if "error" in row:
            lines.append(f"| {row['scenario']} | suite error: {row['error']} |" + " |" * 10)
            continue
        top = "; ".join(f"{n}× {r[:48]}" for r, n in list(row["dead_letter_reasons"].items())[:3])
        more = len(row["dead_letter_reasons"]) - 3
        letters = f"{row['dead_letters']}" + (f" ({top}{f'; +{more} more reasons' if more > 0 else ''})" if top
                                               else "")
        malformed = f"{row['malformed_accounted']}/{row['malformed_sent']}" if row["malformed_sent"] else "–"
        lines.append(f"| {row['scenario']} {row['title']} | {row['produced']} | {row['reached_samples_topic']} | "
                     f"{row['delivered_unique']} | "
                     f"{row['lost']} | {row['duplicates']} | {letters} | {malformed} | "
                     f"{row['centroid_delta']} / {row['routed_unique']} | {row['unexpected_exits']} | "
                     f"{row['stalls']} | {row['wall_s']} |")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------------------
# Main


SCENARIOS: dict[str, list[Callable[[Suite], Run]]] = {
    "a": [scenario_kill_storm], "b": [scenario_hostile], "c": [scenario_outage_redis, scenario_outage_kafka],
    "d": [scenario_sigterm], "e": [scenario_failover], "f": [scenario_zombie], "g": [scenario_fast_clocks],
    "h": [scenario_lost_centroids], "i": [scenario_long_kafka_outage], "j": [scenario_restart_ids],
}


def run_scenario(suite: Suite, scenario: Callable[[Suite], Run]) -> dict:
    """One scenario, bounded; its row (or its error: the suite's own failure, reported and survived)."""
    holder: dict = {}
    known = len(suite.runs)

    def target() -> None:
        try:
            holder["run"] = scenario(suite)
        except Exception as exc:
            holder["error"] = f"{exc.__class__.__name__}: {exc}"

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(suite.args.scenario_limit_s)
    if "run" not in holder:
        error = holder.get("error", f"scenario did not finish in {suite.args.scenario_limit_s} s")
        say(f"   suite error in {scenario.__name__}: {error}")
        for run in suite.runs[known:]:
            run.sup.shutdown()  # no leftovers
        return {"scenario": scenario.__name__, "error": error}
    try:
        row = finish(holder["run"])
    except Exception as exc:  # the suite's own failure while measuring: reported, the next scenario runs
        holder["run"].sup.shutdown()
        say(f"   suite error measuring {scenario.__name__}: {exc.__class__.__name__}: {exc}")
        return {"scenario": scenario.__name__, "error": f"{exc.__class__.__name__}: {exc}"}
    print_row(row)
    return row


def prepare(args: argparse.Namespace) -> Suite:
    cluster = Cluster.from_env()
    folder = Path(args.out) / time.strftime("%Y%m%d-%H%M%S")
    folder.mkdir(parents=True, exist_ok=True)
    workdir = Path(args.workdir) if args.workdir else None
    if workdir is None:
        from tests.support.helpers import tiny_workdir

        workdir = tiny_workdir(folder / "tiny-workdir")
        say(f"tiny workdir (no download): {workdir}")
    from dimee.streaming.deployment import Deployment

    cal = json.loads((workdir / "calibration.json").read_text())
    state_id = Deployment.load(workdir, "DIMEE-F").state_id  # the Redis namespace the routers use
    return Suite(cluster, workdir.resolve(), folder.resolve(), state_id, list(cal["pool_sizes"]), args,
                 random.Random(args.seed))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenarios", default=",".join(SCENARIOS), help="comma-separated subset of "
                        + ",".join(SCENARIOS))
    parser.add_argument("--samples", type=int, default=3000, help="samples in (a), the kill storm")
    parser.add_argument("--rate", type=float, default=40.0, help="samples/s in (a)")
    parser.add_argument("--kills", type=int, default=12, help="SIGKILLs in (a)")
    parser.add_argument("--other-samples", type=int, default=600, help="samples in (c), (d) and (e)")
    parser.add_argument("--hostile-valid", type=int, default=200, help="valid samples around the hostile ones (b)")
    parser.add_argument("--skip-hostile", default="", help="(b) leave out the hostile kinds whose names contain "
                                                            "any of these comma-separated words")
    parser.add_argument("--outage-s", type=float, default=30.0, help="how long Redis / Kafka stay down in (c)")
    parser.add_argument("--deadline-s", type=float, default=150.0,
                        help="after the stream (and its fault) ends, how long until unanswered samples are a stall")
    parser.add_argument("--scenario-limit-s", type=float, default=900.0, help="hard limit per scenario")
    parser.add_argument("--workdir", default=None, help="a trained workdir (e.g. artifacts/demo); default: a "
                                                        "tiny model built on the spot")
    parser.add_argument("--guarantee", default=os.environ.get("DIMEE_GUARANTEE", "auto"),
                        choices=["auto", "exactly-once", "at-least-once"])
    parser.add_argument("--seed", type=int, default=0, help="random choices of the kill storm")
    parser.add_argument("--out", default="runs/faults", help="folder for role logs and stream files")
    parser.add_argument("--json", default=None, help="write every figure here (e.g. runs/faults.json)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    chosen = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    unknown = [s for s in chosen if s not in SCENARIOS]
    if unknown:
        sys.exit(f"faults: unknown scenario(s) {unknown}; choose from {', '.join(SCENARIOS)}")
    suite = prepare(args)
    started = time.monotonic()
    rows = [run_scenario(suite, scenario) for key in chosen for scenario in SCENARIOS[key]]
    wall = round(time.monotonic() - started, 1)
    print(f"\n## dimee fault injection ({', '.join(chosen)}), {wall} s\n\n{table(rows)}\n", flush=True)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps({"command": " ".join(sys.argv), "wall_s": wall,
                                               "scenarios": rows}, indent=2, default=str))
        say(f"figures written to {args.json}")
    return 1 if any("error" in row for row in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
