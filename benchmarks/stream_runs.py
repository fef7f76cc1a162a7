"""The benchmark's runs on Kafka + Redis, each role a process with `--threads` of its own:

- `pipeline`: router, three workers and sink, samples produced at once (saturated) or paced; throughput,
  produce → prediction latency, and per role the time to ready, the time to exit and the peak memory;
- `stage_by_stage`: the samples produced first, then each stage started alone and timed while it drains its
  input (the stage saturated, nothing else running): records/s, efficiency (process time ÷ wall time), and
  the role's time from launch to ready, from SIGTERM to exit and its peak memory; the samples five times over
  (`STEADY_TIMES`, fresh ids), so the figures are the stages' steady rates, not their start-up;
- `scale_out`: the busiest tier's topic drained again by fresh consumer groups of 1 and 2 workers.
"""

from __future__ import annotations

import json
import sys
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from benchmarks.processes import RoleSet, service_env
from dimee.method.tiers import TIER_NAMES as TIERS


@dataclass(frozen=True)
class Setup:
    workdir: Path
    logs: Path
    policy: str = "DIMEE-F"
    batch: int = 32
    partitions: int = 2
    code: Path | None = None  # another checkout's roles (before/after)


def produce(prefix: str, records: list[dict], partitions: int, rate: float | None = None) -> float:
    """Send the records to PREFIX.samples from this process; the time of the first send."""
    import os

    from dimee.producers.producer import ProduceOptions, produce

    from dimee.streaming.transport import Topics, open_transport

    transport = open_transport(f"kafka://{os.environ['DIMEE_TEST_KAFKA']}", client_id="bench-producer")
    started = time.time()
    produce(transport, Topics(prefix), [dict(r, produced_at=time.time()) for r in records] if rate is None
            else _stamped_when_sent(records), ProduceOptions(rate=rate, progress=False, partitions=partitions))
    return started


def _stamped_when_sent(records: list[dict]):
    for record in records:  # paced: the latency counts from the moment each one is sent
        yield dict(record, produced_at=time.time())


def _start_pipeline(roles: RoleSet, setup: Setup, out: Path, threads: dict[str, int]) -> None:
    workdir = str(setup.workdir)
    _start_router(roles, setup, threads=threads.get("router", 1))
    for tier in TIERS:
        roles.start(f"worker-{tier}", "work", "--tier", tier, "--workdir", workdir, "--max-batch", str(setup.batch),
                    "--log-level", "WARNING", threads=threads.get(tier, 1))
    roles.start("sink", "sink", "--out", str(out), "--log-level", "WARNING", threads=1)


def _lines(path: Path) -> int:
    if not path.exists():
        return 0
    with path.open("rb") as file:
        return sum(1 for _ in file)


def pipeline(setup: Setup, records: list[dict], guarantee: str = "auto", rate: float | None = None,
             threads: dict[str, int] | None = None) -> dict:
    prefix = f"bench-{uuid.uuid4().hex[:8]}"
    out = setup.logs / prefix / "dimee.predictions.jsonl"
    with RoleSet(service_env(prefix, guarantee, setup.partitions), setup.logs / prefix, setup.code) as roles:
        _start_pipeline(roles, setup, out, threads or {})
        roles.wait_ready()
        produce(prefix, records, setup.partitions, rate)
        _wait_for_predictions(out, len(records), roles)
        process_s = {name: _process_seconds(role) for name, role in roles.roles.items()}
        roles.stop()
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    produced = min(r["timings"]["produced_at"] for r in rows)
    finished = max(r["timings"]["finished_at"] for r in rows)
    latency_ms = np.array([r["timings"]["finished_at"] - r["timings"]["produced_at"] for r in rows]) * 1000
    return {"samples": len(rows), "seconds": finished - produced, "per_s": len(rows) / (finished - produced),
            "p50_ms": float(np.percentile(latency_ms, 50)), "p99_ms": float(np.percentile(latency_ms, 99)),
            "hops": hop_latencies(rows),
            "ready_s": {n: r.ready_s for n, r in roles.roles.items()},
            "exit_s": {n: r.exit_s for n, r in roles.roles.items()},
            "peak_rss_mb": {n: r.peak_rss_mb for n, r in roles.roles.items()}, "process_s": process_s}


# A record's way, from the timings every prediction carries (the sink adds none: latency ends at the pass).
HOPS = (("produce → routed", "produced_at", "routed_at"),
        ("routed → the worker's pass (router batch and commit, read_committed, worker poll and batch)",
         "routed_at", "started_at"),
        ("the worker's pass", "started_at", "finished_at"))


def hop_latencies(rows: list[dict]) -> dict[str, dict[str, float | None]]:
    """p50 and p99 per hop, over the samples answered by the tier they were routed to (an escalated sample's
    second hop also holds the lower tier's pass and its transaction)."""
    direct = [row["timings"] for row in rows if len(row.get("path") or []) <= 1]
    hops: dict[str, dict[str, float | None]] = {}
    for name, start, end in HOPS:
        ms = np.array([t[end] - t[start] for t in direct]) * 1000
        hops[name] = {f"p{q}_ms": float(np.percentile(ms, q)) if len(ms) else None for q in (50, 99)}
    return hops


def _wait_for_predictions(out: Path, expected: int, roles: RoleSet, stall_s: float = 60.0) -> None:
    """Until the sink has written `expected` predictions; a run that stops making progress is an error (with
    where to look), not a benchmark figure."""
    seen, progressed = 0, time.monotonic()
    while seen < expected:
        time.sleep(0.05)
        now = _lines(out)
        if now > seen:
            seen, progressed = now, time.monotonic()
        elif time.monotonic() - progressed > stall_s:
            _dump_stacks(roles)
            raise RuntimeError(f"the pipeline stalled at {seen}/{expected} predictions (logs and the roles' "
                               f"stacks in {roles.logs})")


def _dump_stacks(roles: RoleSet) -> None:
    """Where each live role is stuck, with py-spy where it is installed: ROLE.stack beside its log."""
    import shutil
    import subprocess

    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(spy).exists():
        return
    for name, role in roles.roles.items():
        if role.process.poll() is None:
            dump = subprocess.run([spy, "dump", "--pid", str(role.process.pid)], capture_output=True, text=True)
            (roles.logs / f"{name}.stack").write_text(dump.stdout + dump.stderr)


def _process_seconds(role) -> float | None:
    """Seconds the role spent in process() (None from a checkout that does not count them)."""
    metrics = role.metrics()
    found = [v for (name, _), v in metrics.items() if name == "dimee_process_seconds_total"]
    return sum(found) if found else None


def _progress(role) -> tuple[float, float]:
    """Records the role has consumed and committed so far (0, 0 while its metrics port is not up yet). A
    checkout that does not count commits reports its consumed records for both."""
    try:
        metrics = role.metrics()
    except OSError:
        return 0.0, 0.0
    consumed = sum(v for (name, _), v in metrics.items() if name == "dimee_messages_in_total")
    committed = [v for (name, _), v in metrics.items() if name == "dimee_records_committed_total"]
    return consumed, sum(committed) if committed else consumed


def _drain(roles: RoleSet, name: str, expected: int, timeout_s: float = 600.0) -> dict:
    """Watch the named roles (name, or name#0, name#1 …), just launched on a full input topic, until they have
    committed `expected` records: their rate and efficiency over the window from their first record to the
    commit of their last (not counting start-up)."""
    members = [r for n, r in roles.roles.items() if n == name or n.startswith(f"{name}#")]
    first = None
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        consumed, committed = (sum(column) for column in zip(*(_progress(r) for r in members), strict=True))
        for role in members:  # launched alone on an idle machine: the time to ready that figure h reports
            if role.ready_s is None and role.is_ready():
                role.ready_s = time.monotonic() - role.launched
        if consumed and first is None:
            first = time.monotonic()
        if committed >= expected:
            break
        if any(r.process.poll() is not None for r in members):
            raise RuntimeError(f"{name} exited while draining its input (logs in {roles.logs})")
        time.sleep(0.01)
    wall = time.monotonic() - (first or time.monotonic())
    busy = [_process_seconds(r) for r in members]
    efficiency = None if None in busy or wall <= 0 else sum(busy) / (wall * len(members))  # type: ignore[arg-type]
    return {"records": expected, "seconds": wall, "per_s": expected / wall if wall > 0 else None,
            "efficiency": efficiency}


@dataclass(frozen=True)
class Filled:
    """Tier topics a `stage_by_stage` run left full: under `prefix`, `routed[tier]` records each (routed there,
    escalated and audit copies)."""

    prefix: str
    routed: dict[str, int]

    @property
    def busiest(self) -> str:
        return max(self.routed, key=self.routed.__getitem__)


# A stage measured alone drains the bench's samples this many times over (each copy with ids of its own): its
# steady rate. Once over, 600 samples were three of the router's transactions and a few batches of each worker,
# and the figures measured their start-up.
STEADY_TIMES = 5


def _fresh_ids(messages: list[dict], times: int) -> list[dict]:
    """The messages `times` over, each copy with ids of its own (the stages dedupe by id)."""
    return [dict(m, id=f"{m['id']}-{k}") for k in range(times) for m in messages]


def _start_router(roles: RoleSet, setup: Setup, name: str = "router", threads: int = 1) -> None:
    roles.start(name, "route", "--workdir", str(setup.workdir), "--reseed", "--policy", setup.policy,
                "--max-batch", "64", "--log-level", "WARNING", threads=threads)


def _sent(role) -> Counter[str]:
    """Records the role committed to each topic (routed, escalated, audit copies, predictions)."""
    return Counter({dict(labels)["topic"]: int(value) for (name, labels), value in role.metrics().items()
                    if name == "dimee_messages_out_total"})


def _alone(roles: RoleSet, name: str, expected: int, sent: Counter[str]) -> dict:
    """The role just started, drained alone until it committed `expected` records, then stopped; what it sent is
    added to `sent`."""
    figures = _drain(roles, name, expected) | {"batch_compute_s": _batch_compute(roles.roles[name])}
    sent.update(_sent(roles.roles[name]))
    roles.stop(name)
    return figures


def stage_by_stage(setup: Setup, records: list[dict]) -> tuple[dict, Filled]:
    """Each stage alone, in the order of the stream, on the input the stages before it left: the figures per
    stage, and the tier topics it filled. The samples are the records STEADY_TIMES over."""
    prefix, samples = f"bench-{uuid.uuid4().hex[:8]}", _fresh_ids(records, STEADY_TIMES)
    produce(prefix, samples, setup.partitions)
    workdir, figures, sent = str(setup.workdir), {}, Counter()
    with RoleSet(service_env(prefix, "auto", setup.partitions), setup.logs / prefix, setup.code) as roles:
        _start_router(roles, setup)
        figures["router"] = _alone(roles, "router", len(samples), sent)
        inputs = {}
        for tier in TIERS:  # each tier's input: what the router and the tiers below it sent there
            inputs[tier] = sent[f"{prefix}.{tier}"]
            if inputs[tier]:
                name = f"worker-{tier}"
                roles.start(name, "work", "--tier", tier, "--workdir", workdir, "--max-batch", str(setup.batch),
                            "--log-level", "WARNING")
                figures[name] = _alone(roles, name, inputs[tier], sent)
        roles.start("sink", "sink", "--out", str(setup.logs / prefix / "sink.jsonl"), "--log-level", "WARNING")
        figures["sink"] = _alone(roles, "sink", sent[f"{prefix}.predictions"], sent)
    for name, role in roles.roles.items():
        figures[name] |= {"ready_s": role.ready_s, "exit_s": role.exit_s, "peak_rss_mb": role.peak_rss_mb}
    return figures, Filled(prefix, inputs)


def _batch_compute(role) -> float | None:
    """Mean process() seconds of one batch."""
    busy = _process_seconds(role)
    batches = role.metric("dimee_batch_size_count")
    return busy / batches if busy is not None and batches else None


def scale_out(setup: Setup, filled: Filled, workers: int, threads: int) -> dict:
    """A fresh consumer group of `workers` workers of the busiest tier (each with `threads`) drains the topic
    `stage_by_stage` filled: the same records every time."""
    prefix, tier = filled.prefix, filled.busiest
    group = f"{prefix}.scale.{uuid.uuid4().hex[:6]}"
    env = service_env(prefix, "auto", setup.partitions)
    with RoleSet(env, setup.logs / prefix / group, setup.code) as roles:
        for i in range(workers):
            roles.start(f"worker#{i}", "work", "--tier", tier, "--workdir", str(setup.workdir), "--group", group,
                        "--instance-id", f"{group}-{i}", "--max-batch", str(setup.batch), "--log-level", "WARNING",
                        threads=threads)
        figures = _drain(roles, "worker", filled.routed[tier])
        roles.stop()
    return figures
