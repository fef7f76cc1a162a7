"""Reading what a scenario left: its topics (read_committed by default), the sink's file, the centroid counts
in Redis, the groups' committed offsets and a partition's leader."""

from __future__ import annotations

import json
import re
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from dimee.state import namespace

from benchmarks.faults.hostile import INJECTOR
from dimee.method.tiers import TIER_NAMES as TIERS

if TYPE_CHECKING:
    from benchmarks.faults.runs import Suite


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


def sink_answers(path: Path) -> dict[str, tuple[str, int]]:
    """Each answered id's tier and label in the sink's JSONL (the first answer; a torn last line is skipped)."""
    answers: dict[str, tuple[str, int]] = {}
    if path.exists():
        for line in path.read_text(errors="replace").splitlines():
            data = loads(line.encode()) if line.strip() else {}
            if isinstance(data.get("id"), str) and isinstance(data.get("label_pred"), int):
                answers.setdefault(data["id"], (str(data.get("tier")), data["label_pred"]))
    return answers


def centroid_delta(redis_url: str, where: str, pool_sizes: list[int]) -> int | None:
    """sum(count) of the pools in Redis (under the pipeline's namespace `where`, `dimee.state.namespace`) minus the
    calibration pool sizes: the ids that moved a centroid."""
    import redis

    client = redis.Redis.from_url(redis_url, socket_timeout=5, socket_connect_timeout=3)
    try:
        pools = client.hget(f"{where}:meta", "pools")
        if pools is None:
            return None
        counts = [int(client.hget(f"{where}:pool:{k}", "count") or 0) for k in range(int(pools))]
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
    costs: dict[str, float]  # each answered id's cost (`cost.total` of its first prediction)


def observe(suite: Suite, prefix: str) -> Observed:
    kafka = suite.cluster.kafka
    answers = [loads(r.value) for r in read_topic(kafka, f"{prefix}.predictions")]
    predictions = Counter(a.get("id") for a in answers)
    predictions.pop(None, None)
    costs: dict[str, float] = {}
    for answer in answers:
        cost = answer.get("cost")
        if isinstance(cost, dict) and isinstance(cost.get("total"), int | float):
            costs.setdefault(answer.get("id"), float(cost["total"]))
    routed = set()
    for tier in TIERS:
        for record in read_topic(kafka, f"{prefix}.{tier}"):
            data = loads(record.value)
            if data.get("router") not in (None, INJECTOR) and not data.get("hops"):
                routed.add(data.get("id"))
    letters = [loads(r.value) for r in read_topic(kafka, f"{prefix}.dead-letter")]
    samples = {loads(r.value).get("id") for r in read_topic(kafka, f"{prefix}.samples", committed=False)}
    delta = centroid_delta(suite.cluster.redis, namespace(prefix, suite.state_id), suite.pool_sizes)
    return Observed(predictions, samples, routed, letters, delta, costs)


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


def leader_of(kafka: list[str], topic: str, partition: int) -> int | None:
    from kafka import KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=kafka)
    try:
        described = admin.describe_topics([topic])[0]
        return next((p["leader_id"] for p in described["partitions"] if p["partition_index"] == partition), None)
    finally:
        admin.close()
