"""How many of each role a target rate needs, and how big their batches and topics: pure arithmetic on
measured rates (`dimee.offline.capacity.rates`), no files, no clock.

For one instance of a stage computing C samples/s with micro-batches of B, under exactly-once:
    compute   b = B / C                               seconds a batch computes
    ceiling   T = min(C, Q · B / c)                   samples/s: while one transaction commits (c seconds),
                                                      up to Q batches wait, then go in the next one
                                                      (Q = BatchLimits.max_queued_batches)
    hop p99   w + b + max(b, c) + c                   a record waits for the batch in progress (w: max wait),
                                                      is computed, and is seen downstream once its
                                                      transaction commits
The batch chosen is the smallest power of two (8 to 1024) whose ceiling is the compute rate, within half the
p99 budget (the path is two hops: router, then the tier that answers). Instances = load / (T · (1 − headroom)),
and each topic gets as many partitions as its consumers may scale to (`burst` × instances, at least 3).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from dimee.common.errors import DimeeError
from dimee.method.tiers import TIER_NAMES
from dimee.offline.capacity.rates import Rates
from dimee.streaming.config import Settings, setting_default
from dimee.streaming.stage import BatchLimits

BATCHES = tuple(2**k for k in range(3, 11))  # 8 … 1024
QUEUED = BatchLimits().max_queued_batches
SINK_BATCH = BatchLimits().max_batch  # `dimee sink` takes no --max-batch
MIN_PARTITIONS = 3  # dimee's default (DIMEE_PARTITIONS): room for a few instances at any rate
GPU_THREADS = 4  # a GPU worker's host threads: tokenising and batching beside the device
# One commit of a batch, kafka-python 3.0 on a 3-node Kafka 4.4 with replica.fetch.wait.max.ms=50
# (docs/operations.md, "The Kafka client, measured"): a transaction of 64 records with the consumer's offsets back
# to back, as a loaded stage commits (median of six runs, 84-216 ms: 113, rounded up), or a send + flush of 64.
COMMIT_MS = {"exactly-once": 120.0, "at-least-once": 8.0}


@dataclass(frozen=True)
class Target:
    rate: float  # samples/s into PREFIX.samples
    shares: dict[str, float]  # share of the samples each tier's workers take in (routed there or escalated)
    p99_ms: float  # produce → prediction
    audit_rate: float = Settings.model_fields["audit_rate"].default  # answers below the cloud it checks again
    gpu_tiers: frozenset[str] = frozenset()
    threads: int = 1  # per CPU worker: more worker processes beat more threads (docs/operations.md)
    router_threads: int = 1
    headroom: float = 0.3  # capacity kept spare: a burst, a lost pod, a rebalance
    burst: float = 2.0  # how far past the target the autoscaler may go (sets the partitions)
    commit_ms: float = COMMIT_MS["exactly-once"]
    max_wait_ms: float = float(setting_default("max_wait_ms"))
    replication: int = 3
    broker_mb_s: float = 50.0  # replicated writes one broker takes: an assumption to replace with yours

    def __post_init__(self) -> None:
        if self.rate <= 0 or self.p99_ms <= 0:
            raise DimeeError("the target rate and the p99 budget must be above 0")
        unknown = set(self.shares) - set(TIER_NAMES)
        if unknown or any(not 0 <= share <= 1 for share in self.shares.values()):
            raise DimeeError(f"tier shares: each of {', '.join(TIER_NAMES)} between 0 and 1, not {self.shares}")
        if sum(self.shares.values()) < 0.999:
            raise DimeeError(f"tier shares add up to {sum(self.shares.values()):.3f}: every sample enters at "
                             "least one tier, so they add up to 1 or more (more with escalation)")
        if not 0 <= self.headroom < 1 or self.burst < 1:
            raise DimeeError("headroom is a share below 1, and burst at least 1")


@dataclass(frozen=True)
class RolePlan:
    role: str  # router, worker-TIER, sink
    topic: str  # its input topic's key: samples, TIER, predictions
    load: float  # samples/s it takes in
    device: str
    threads: int
    max_batch: int
    per_instance: float  # samples/s one instance sustains at that batch
    instances: int  # at the target rate, with the headroom kept
    max_instances: int  # what the autoscaler may reach: the topic's partitions
    hop_p99_ms: float
    lag_threshold: int  # records of lag per instance the autoscaler aims at: what one clears in half the budget

    @property
    def utilisation(self) -> float:
        return self.load / (self.instances * self.per_instance)


@dataclass(frozen=True)
class Broker:
    records_per_s: float  # written to dimee's topics
    write_mb_s: float  # before replication
    read_mb_s: float  # by dimee's consumer groups and the dashboard
    transactions_per_s: float  # at most one commit per instance per batch cycle
    partitions: int  # of the planned topics, each replicated `replication` times
    brokers: int  # for the replicated writes at `broker_mb_s` each, keeping the headroom; at least 3


@dataclass(frozen=True)
class Plan:
    target: Target
    roles: list[RolePlan]
    broker: Broker
    p99_ms: float  # the router's hop and the slowest tier's
    sources: tuple[str, ...] = field(default=())

    def role(self, name: str) -> RolePlan:
        return next(r for r in self.roles if r.role == name)

    def partitions(self) -> dict[str, int]:
        return {r.topic: r.max_instances for r in self.roles}


def hop_ms(batch: int, compute_per_s: float, target: Target) -> float:
    compute_ms = 1000.0 * batch / compute_per_s
    return target.max_wait_ms + compute_ms + max(compute_ms, target.commit_ms) + target.commit_ms


def ceiling(batch: int, compute_per_s: float, target: Target) -> float:
    return min(compute_per_s, QUEUED * batch * 1000.0 / target.commit_ms)


def choose_batch(role: str, compute_per_s: float, target: Target, budget_ms: float) -> int:
    """The smallest batch that is not commit-bound, else the largest within the hop's budget."""
    fitting = [b for b in BATCHES if hop_ms(b, compute_per_s, target) <= budget_ms]
    if not fitting:
        floor = hop_ms(BATCHES[0], compute_per_s, target)
        cheaper = " or plan for --guarantee at-least-once" if target.commit_ms > COMMIT_MS["at-least-once"] else ""
        raise DimeeError(f"--p99-ms {target.p99_ms:g}: each of the two hops gets {budget_ms:.0f} ms, but the {role}'s "
                         f"takes {floor:.0f} ms even at batches of {BATCHES[0]} (a commit is {target.commit_ms:g} ms): "
                         f"raise the budget{cheaper}")
    return next((b for b in fitting if ceiling(b, compute_per_s, target) >= compute_per_s), fitting[-1])


def size_role(role: str, topic: str, load: float, compute: tuple[float, str, int], target: Target) -> RolePlan:
    """One role: `compute` is (samples/s of one instance's compute, device, threads)."""
    per_s, device, threads = compute
    batch = SINK_BATCH if role == "sink" else choose_batch(role, per_s, target, target.p99_ms / 2)
    per_instance = ceiling(batch, per_s, target)
    instances = max(1, math.ceil(load / (per_instance * (1 - target.headroom))))
    most = max(MIN_PARTITIONS, math.ceil(instances * target.burst))
    lag = max(batch, int(per_instance * target.p99_ms / 2000.0))
    return RolePlan(role, topic, load, device, threads, batch, per_instance, instances, most,
                    hop_ms(batch, per_s, target), lag)


def tier_loads(target: Target) -> dict[str, float]:
    """Samples/s each tier takes in; the last tier also runs the audits of what the others answered."""
    loads = {tier: target.rate * target.shares.get(tier, 0.0) for tier in TIER_NAMES}
    answered_below = max(0.0, 1.0 - target.shares.get(TIER_NAMES[-1], 0.0))
    loads[TIER_NAMES[-1]] += target.rate * target.audit_rate * answered_below
    return loads


def worker_compute(tier: str, rates: Rates, target: Target) -> tuple[float, str, int]:
    rate = rates.tiers[tier]
    if tier in target.gpu_tiers:
        if rate.gpu_per_worker is None:
            raise DimeeError(f"the {tier} tier on GPU needs its measured rate: --gpu-rate {tier}=SAMPLES_PER_S")
        return rate.gpu_per_worker, "cuda", GPU_THREADS
    return rate.cpu_per_thread * target.threads, "cpu", target.threads


def broker_load(roles: list[RolePlan], rates: Rates, target: Target) -> Broker:
    """Records and bytes on dimee's topics: samples in, a routed record per tier entered (audit copies
    included), a prediction per sample; every topic read once by its group, the predictions twice (the sink
    and the dashboard). A transaction per instance per batch cycle at most."""
    tiers_in = sum(r.load for r in roles if r.role.startswith("worker-"))
    records = target.rate + tiers_in + target.rate
    write = (target.rate + tiers_in) * rates.routed_bytes + target.rate * rates.prediction_bytes
    read = write + target.rate * rates.prediction_bytes
    transactions = sum(r.instances * 1000.0 / max(1000.0 * r.max_batch / r.per_instance, target.commit_ms)
                       for r in roles)
    partitions = sum(r.max_instances for r in roles)
    mb = 1e6
    brokers = max(3, math.ceil(write * target.replication / mb / (target.broker_mb_s * (1 - target.headroom))))
    return Broker(records, write / mb, read / mb, transactions, partitions, brokers)


def plan(target: Target, rates: Rates) -> Plan:
    """Every role sized for the target: the router, one worker group per tier (one instance at least, even
    for a tier with no share: escalations and audits may still reach it), the sink."""
    router = size_role("router", "samples", target.rate,
                       (rates.router_per_thread * target.router_threads, "cpu", target.router_threads), target)
    workers = [size_role(f"worker-{tier}", tier, load, worker_compute(tier, rates, target), target)
               for tier, load in tier_loads(target).items()]
    sink = size_role("sink", "predictions", target.rate, (math.inf, "cpu", 1), target)
    roles = [router, *workers, sink]
    p99 = router.hop_p99_ms + max(w.hop_p99_ms for w in workers)
    return Plan(target, roles, broker_load(roles, rates, target), p99, rates.sources)
