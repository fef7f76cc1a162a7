"""Exactly-once on the real Kafka cluster: every stage commits its outputs and input offsets in one
transaction, so a read_committed reader of the predictions topic sees each sample once through a SIGKILLed
worker, a zombie instance and a broker that dies mid-stream."""

from __future__ import annotations

import threading
import time
from collections import Counter

import pytest
from kafka import KafkaAdminClient

from dimee.composition.pipeline import PipelineOptions, run_pipeline
from dimee.streaming.messages import Prediction, parse
from dimee.streaming.transport.base import Topics
from tests.integration.test_kafka_redis import TIERS, _logs, api_version, read_topic, settings, start_roles
from tests.support.deadlines import scaled
from tests.support.helpers import deployment, stream_records
from tests.support.processes import read_sink, wait_for, write_jsonl
from tests.support.real_services import KAFKA, KAFKA_NODES, services

pytestmark = pytest.mark.skipif(api_version() is not None and api_version() < (0, 11),
                                reason="the legacy broker has no transactions")


def committed_prediction_ids(prefix: str, expected: int) -> Counter:
    records = read_topic(Topics(prefix).predictions, expected, timeout_s=120, read_committed=True)
    for record in records:  # current brokers carry the envelope as record timestamp and headers too
        prediction, headers = parse(Prediction, record.value), dict(record.headers)
        assert record.timestamp == int(prediction.timings.finished_at * 1000)
        assert headers["dimee-id"] == prediction.id.encode() and b"." in headers["dimee-produced-at"]
    return Counter(parse(Prediction, r.value).id for r in records)


def test_a_worker_killed_mid_transaction_leaves_each_prediction_once(workdir, procs, prefix, tmp_path):
    records = stream_records(240, seed=21)
    out = tmp_path / "dimee.predictions.jsonl"
    start_roles(procs, workdir, sink_out=out)
    source = write_jsonl(tmp_path / "in.jsonl", records)
    procs.start("producer", "produce", "--source", str(source), "--id-col", "id", "--rate", "60")
    wait_for(lambda: sum(r["tier"] == "edge" for r in read_sink(out)) >= 10, 180, "edge predictions", _logs(procs))
    procs.kill("worker-edge")  # SIGKILL, most likely between a transaction's sends and its commit
    procs.start("worker-edge", "work", "--tier", "edge", "--workdir", str(workdir), "--max-batch", "16")
    wait_for(lambda: len(read_sink(out)) >= len(records), 300, "all predictions after the restart", _logs(procs))
    procs.stop_all()
    seen = committed_prediction_ids(prefix, len(records))
    assert sorted(seen) == sorted(r["id"] for r in records)  # none lost
    assert max(seen.values()) == 1  # none twice, to a read_committed reader, without the sink's dedupe


def test_a_second_instance_with_the_same_id_fences_the_first(workdir, procs, prefix, tmp_path):
    records = stream_records(150, seed=22)
    out = tmp_path / "dimee.predictions.jsonl"
    start_roles(procs, workdir, sink_out=out)
    procs.stop("worker-cloud")
    procs.start("zombie", "work", "--tier", "cloud", "--workdir", str(workdir), "--instance-id", "cloud-1")
    procs.wait_started("zombie")
    procs.start("successor", "work", "--tier", "cloud", "--workdir", str(workdir), "--instance-id", "cloud-1")
    procs.wait_started("successor")
    source = write_jsonl(tmp_path / "in.jsonl", records)
    procs.start("producer", "produce", "--source", str(source), "--id-col", "id")
    wait_for(lambda: len(read_sink(out)) >= len(records), 300, "all predictions", _logs(procs))
    zombie = procs.running["zombie"]
    wait_for(lambda: zombie.poll() is not None, 60, "the zombie to stop", _logs(procs))
    assert zombie.returncode != 0 and "fenced" in procs.log("zombie")
    procs.stop_all()
    seen = committed_prediction_ids(prefix, len(records))
    assert sorted(seen) == sorted(r["id"] for r in records) and max(seen.values()) == 1


def _leader_of(topic: str, partition: int) -> int:
    admin = KafkaAdminClient(bootstrap_servers=KAFKA.split(","))
    try:
        described = admin.describe_topics([topic])[0]
        return next(p["leader_id"] for p in described["partitions"] if p["partition_index"] == partition)
    finally:
        admin.close()


@pytest.mark.skipif(KAFKA_NODES < 3, reason="failover needs the 3-node cluster")
def test_the_leader_of_a_tier_partition_killed_mid_stream(workdir, cal, prefix):
    records = stream_records(240, seed=23)
    failover: dict = {}

    def kill_and_restart_the_leader() -> None:
        time.sleep(3.0)
        node = _leader_of(Topics(prefix).tier(TIERS[1]), 0)
        services("kill-broker", str(node))
        failover["killed"] = node
        time.sleep(10.0)
        services("start-broker", str(node))
        failover["restarted"] = node

    thread = threading.Thread(target=kill_and_restart_the_leader)
    thread.start()
    run = run_pipeline(records, deployment(workdir, cal), settings(prefix),
                       PipelineOptions(progress=False, rate=30, timeout_s=scaled(300)))
    thread.join()
    assert "restarted" in failover
    # Every sample the producer saw acknowledged is answered, once; one whose commit Kafka never answered
    # (kafka-python may not, after its coordinator's broker died) is named by the producer, and answered only
    # if that commit took effect after all.
    acknowledged = {r["id"] for r in records} - set(run.unacknowledged)
    assert acknowledged <= set(run.predictions) <= {r["id"] for r in records}
    assert run.duplicates == 0 and len(run.unacknowledged) < len(records) // 4
    seen = committed_prediction_ids(prefix, len(run.predictions))
    assert sorted(seen) == sorted(run.predictions) and max(seen.values()) == 1
