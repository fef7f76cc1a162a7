"""deploy/compose.yaml (production-shaped) and deploy/local-services.sh (the cluster the tests run on) must
describe the same Kafka: the same major version and the same partition and replication settings."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

yaml = pytest.importorskip("yaml")

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
SHARED = ("num.partitions", "default.replication.factor", "min.insync.replicas", "offsets.topic.replication.factor",
          "transaction.state.log.replication.factor", "transaction.state.log.min.isr", "auto.create.topics.enable",
          "replica.fetch.wait.max.ms")


def local_properties(nodes: int = 3) -> dict[str, str]:
    out = subprocess.run(["bash", str(DEPLOY / "local-services.sh"), "properties", "1"], check=True,
                         capture_output=True, text=True, env={"PATH": "/usr/bin:/bin", "KAFKA_NODES": str(nodes)})
    return dict(line.split("=", 1) for line in out.stdout.splitlines() if "=" in line)


def compose_kafka() -> dict[str, dict]:
    services = yaml.safe_load((DEPLOY / "compose.yaml").read_text())["services"]
    return {name: service for name, service in services.items() if "kafka" in service.get("image", "")}


def test_compose_runs_the_tested_kafka_major_version_as_a_three_node_kraft_cluster():
    pom = (DEPLOY / "kafka" / "pom.xml").read_text()
    tested = re.search(r"<kafka.version>([\d.]+)</kafka.version>", pom).group(1)
    nodes = compose_kafka()
    assert len(nodes) == 3
    for name, node in nodes.items():
        env = node["environment"]
        assert node["image"].split(":")[1].split(".")[0] == tested.split(".")[0], name
        assert env["KAFKA_PROCESS_ROLES"] == "broker,controller" and "ZOOKEEPER" not in str(env)
        assert len(env["KAFKA_CONTROLLER_QUORUM_VOTERS"].split(",")) == 3
        assert env["CLUSTER_ID"] and node["healthcheck"]["test"]
        assert any(volume.endswith(":" + env["KAFKA_LOG_DIRS"]) for volume in node["volumes"]), name
    assert len({node["environment"]["CLUSTER_ID"] for node in nodes.values()}) == 1
    assert len({node["environment"]["KAFKA_NODE_ID"] for node in nodes.values()}) == 3


def test_compose_and_the_local_cluster_agree_on_partitions_and_replication():
    local = local_properties(nodes=3)
    assert (local["default.replication.factor"], local["min.insync.replicas"]) == ("3", "2")
    for name, node in compose_kafka().items():
        env = node["environment"]
        for key in SHARED:
            assert str(env["KAFKA_" + key.upper().replace(".", "_")]).lower() == local[key], (name, key)


def test_followers_fetch_a_transactions_markers_without_kafkas_half_second_wait():
    """A transaction is complete (and the producer's next one accepted) only once the followers fetched its
    markers; with Kafka's default 500 ms wait each exactly-once hop's next transaction waited up to that long."""
    assert int(local_properties()["replica.fetch.wait.max.ms"]) <= 100


def test_a_single_local_node_keeps_one_replica():
    local = local_properties(nodes=1)
    assert local["default.replication.factor"] == local["min.insync.replicas"] == "1"
    assert local["controller.quorum.voters"].count("@") == 1


def test_the_roles_bootstrap_from_every_kafka_node():
    services = yaml.safe_load((DEPLOY / "compose.yaml").read_text())["services"]
    broker = services["router"]["environment"]["DIMEE_BROKER"]
    assert sorted(broker.removeprefix("kafka://").split(",")) == sorted(f"{n}:9092" for n in compose_kafka())


def test_the_roles_run_exactly_once():
    services = yaml.safe_load((DEPLOY / "compose.yaml").read_text())["services"]
    roles = [s for name, s in services.items() if name in ("router", "worker-mobile", "worker-edge", "worker-cloud")]
    assert roles and all(s["environment"]["DIMEE_GUARANTEE"] == "exactly-once" for s in roles)


def test_prometheus_scrapes_every_role_and_grafana_asks_only_for_real_metrics():
    import json
    import re

    from prometheus_client import REGISTRY

    import dimee.streaming.metrics  # noqa: F401 - registers every metric

    services = yaml.safe_load((DEPLOY / "compose.yaml").read_text())["services"]
    roles = {name: s for name, s in services.items() if name in ("router", "worker-mobile", "worker-edge",
                                                                 "worker-cloud", "sink")}
    assert all(s["command"][s["command"].index("--metrics-port") + 1] == "9100" for s in roles.values())
    assert all("readyz" in " ".join(s["healthcheck"]["test"]) for s in roles.values())
    scrape = yaml.safe_load((DEPLOY / "prometheus.yml").read_text())["scrape_configs"][0]["static_configs"]
    assert sorted(t for c in scrape for t in c["targets"]) == sorted(f"{name}:9100" for name in roles)
    exported = {s.name for m in REGISTRY.collect() for s in m.samples} | {
        m.name + suffix for m in REGISTRY.collect() for suffix in ("", "_total", "_bucket", "_info")}
    panels = json.loads((DEPLOY / "grafana" / "dimee.json").read_text())["panels"]
    asked = {name for p in panels for t in p["targets"] for name in re.findall(r"dimee_[a-z_]+", t["expr"])}
    assert asked and asked <= exported, asked - exported


def test_a_node_whose_log_goes_on_after_the_ready_line_is_ready(tmp_path):
    """Defect: `tail | grep -q` under pipefail. grep -q leaves at the first match, tail dies of SIGPIPE on its
    next write, and pipefail made the pipeline fail: a node that had started (its log long after "Kafka Server
    started") was waited for 120 s, then reported as failed. The script's own wait_node, on such a log."""
    import os
    import socket

    run = tmp_path / "run"
    run.mkdir()
    with socket.socket() as listener:  # the node's client port, open
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        (run / "env").write_text(f'KAFKA_PORTS="{listener.getsockname()[1]}"\n')
        (run / "kafka-1.pid").write_text(f"{os.getpid()}\n")  # a live process
        (run / "kafka-1.log").write_text("starting\n[x] INFO Kafka Server started\n" + "later line\n" * 200_000)
        script = DEPLOY / "local-services.sh"
        proc = subprocess.run(["bash", "-c", f'source "{script}" && wait_node 1 0 && echo ready'],
                              capture_output=True, text=True, timeout=20,
                              env={"PATH": os.environ["PATH"], "DIMEE_SERVICES_DIR": str(tmp_path)})
    assert proc.returncode == 0 and proc.stdout.strip() == "ready", proc.stderr[-2000:]
