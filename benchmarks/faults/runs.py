"""A scenario run: its topic prefix, its roles under the supervisor, its stream and what it found."""

from __future__ import annotations

import argparse
import json
import os
import random
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks.faults.cluster import Cluster, Role, Supervisor, say
from benchmarks.faults.reading import loads, read_topic, sink_ids
from dimee.method.tiers import TIER_NAMES as TIERS


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
    pending: list = field(default_factory=list)  # runs a scenario started for the next one to finish (l-2)


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
    policy_args: list[str] = field(default_factory=lambda: ["--policy", "DIMEE-D"])  # the routers' policy options
    worker_args: list[str] = field(default_factory=list)

    @property
    def sink_path(self) -> Path:
        return self.folder / "dimee.predictions.jsonl"

    def valid_ids(self) -> list[str]:
        return [r["id"] for r in self.records]


def new_run(suite: Suite, key: str, title: str, count: int) -> Run:
    from benchmarks.tiny_model import stream_records

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
        return ["route", "--workdir", str(run.suite.workdir), *run.policy_args, *reseed,
                "--instance-id", instance, "--max-batch", "16"]
    return build


def worker_build(run: Run, tier: str, instance: str) -> Callable[[Role], list[str]]:
    def build(_role: Role) -> list[str]:
        return ["work", "--tier", tier, "--workdir", str(run.suite.workdir), "--instance-id", instance,
                "--max-batch", "16", *run.worker_args]
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
    """The valid records not yet committed to the samples topic (what a restarted producer still has to send):
    `dimee produce` sends in transactions, and a chunk its predecessor left open is aborted, never delivered."""
    sent = {loads(r.value).get("id") for r in read_topic(run.suite.cluster.kafka, f"{run.prefix}.samples",
                                                         limit_s=60)}
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


STEADY_RATE = 15.0  # samples/s of the SIGTERM and failover scenarios


def into_a_stream(suite: Suite, key: str, title: str, fraction: float, configure: Callable[[Run], None] | None = None
                  ) -> Run:
    """Every role up and a stream of --other-samples at STEADY_RATE, `fraction` of the way through; `configure`
    sets the run's role options first."""
    run = new_run(suite, key, title, suite.args.other_samples)
    if configure is not None:
        configure(run)
    start_roles(run)
    start_producer(run, STEADY_RATE)
    time.sleep(fraction * stream_seconds(run, STEADY_RATE))
    return run
