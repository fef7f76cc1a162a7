"""A real Prometheus server (Debian's package, installed by deploy/local-services.sh) scrapes the roles with
deploy/prometheus.yml (targets pointed at this test's ports) and sees the lag and latency series."""

from __future__ import annotations

import json
import shutil
import subprocess
import urllib.parse

import pytest
import yaml

from tests.support.deadlines import scaled
from tests.support.helpers import stream_records
from tests.support.processes import free_port, http_get, read_sink, wait_for, write_jsonl
from tests.support.real_services import KAFKA

DEPLOY = __import__("pathlib").Path(__file__).resolve().parents[2] / "deploy"
ROLES = ("router", "worker-mobile", "worker-edge", "worker-cloud", "sink")


def _config(ports: dict[str, int], path) -> None:
    config = yaml.safe_load((DEPLOY / "prometheus.yml").read_text())
    for target in config["scrape_configs"][0]["static_configs"]:
        role = target["labels"]["role"]
        target["targets"] = [f"127.0.0.1:{ports[role]}"]
    config["global"]["scrape_interval"] = "1s"
    path.write_text(yaml.safe_dump(config))


def _query(port: int, expr: str) -> list:
    status, body = http_get(port, "/api/v1/query?query=" + urllib.parse.quote(expr))
    return json.loads(body)["data"]["result"] if status == 200 else []


@pytest.mark.skipif(not shutil.which("prometheus") and KAFKA is not None,
                    reason="prometheus not installed: deploy/local-services.sh install adds it")
def test_a_real_prometheus_sees_lag_and_latency(workdir, procs, tmp_path):
    ports = {role: free_port() for role in ROLES}
    work = ["--workdir", str(workdir)]
    procs.start("router", "route", *work, "--reseed", "--max-batch", "16", "--metrics-port", str(ports["router"]))
    for tier in ("mobile", "edge", "cloud"):
        procs.start(f"worker-{tier}", "work", "--tier", tier, *work, "--max-batch", "16", "--metrics-port",
                    str(ports[f"worker-{tier}"]))
    out = tmp_path / "dimee.predictions.jsonl"
    procs.start("sink", "sink", "--out", str(out), "--metrics-port", str(ports["sink"]))
    procs.wait_started(*ROLES)
    _config(ports, tmp_path / "prometheus.yml")
    web = free_port()
    server = subprocess.Popen(["prometheus", f"--config.file={tmp_path / 'prometheus.yml'}",
                               f"--storage.tsdb.path={tmp_path / 'tsdb'}", f"--web.listen-address=127.0.0.1:{web}"],
                              stdout=subprocess.DEVNULL, stderr=(tmp_path / "prometheus.log").open("w"))
    try:
        records = stream_records(60, seed=61)
        assert procs.start("producer", "produce", "--source", str(write_jsonl(tmp_path / "in.jsonl", records)),
                           "--id-col", "id").wait(timeout=scaled(120)) == 0
        wait_for(lambda: len(read_sink(out)) >= len(records), 240, "all predictions")
        wait_for(lambda: len(_query(web, 'up{job="dimee"} == 1')) == len(ROLES), 60, "every role scraped",
                 lambda: (tmp_path / "prometheus.log").read_text()[-2000:])
        wait_for(lambda: _query(web, "dimee_consumer_lag"), 60, "consumer lag series")
        wait_for(lambda: _query(web, "sum(dimee_latency_seconds_count) >= 60"), 60, "the latency histogram")
        groups = {r["metric"]["group"] for r in _query(web, "dimee_consumer_lag")}
        assert {g.rsplit(".", 1)[-1] for g in groups} >= {"router", "mobile", "edge", "cloud", "sink"}
    finally:
        server.terminate()
        server.wait(timeout=scaled(30))
