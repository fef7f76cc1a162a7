"""How long a Kafka client takes to start when one bootstrap server hangs (SIGSTOPped: it still completes
TCP handshakes), and how long a refused SASL login takes to be reported. Figures only, from one run; the
tests assert the behaviour (tests/integration/test_broker_faults_at_start.py, tests/streaming/test_kafka_bootstrap.py).

    bash deploy/local-services.sh run -- .venv/bin/python -m benchmarks.bootstrap_benchmark
"""

from __future__ import annotations

import os
import statistics
import subprocess
import time

from dimee.common.errors import DimeeError
from dimee.streaming.transport.kafka import KafkaTransport


def timed(action) -> tuple[float, str]:
    start = time.monotonic()
    try:
        action()
        outcome = "started"
    except DimeeError as exc:
        outcome = type(exc).__name__
    return time.monotonic() - start, outcome


def main(starts: int = 8) -> None:
    servers = os.environ["DIMEE_TEST_KAFKA"].split(",")
    script = os.environ["DIMEE_TEST_SERVICES_SCRIPT"]
    transport = KafkaTransport(f"{servers[0]},{servers[1]}")
    subprocess.run(["bash", script, "pause-broker", "1"], check=True, stdout=subprocess.DEVNULL)
    try:
        runs = [timed(lambda: transport.consumer(["bench.samples"], "bench-hung").close()) for _ in range(starts)]
    finally:
        subprocess.run(["bash", script, "resume-broker", "1"], check=True, stdout=subprocess.DEVNULL)
    seconds = [s for s, _ in runs]
    failed = sum(outcome != "started" for _, outcome in runs)
    print(f"client start beside a SIGSTOPped broker: {starts - failed}/{starts} started, median "
          f"{statistics.median(seconds):.2f} s, max {max(seconds):.2f} s")
    sasl = KafkaTransport(",".join(servers), security={
        "security_protocol": "SASL_PLAINTEXT", "sasl_mechanism": "SCRAM-SHA-512", "sasl_plain_username": "bench",
        "sasl_plain_password": "wrong"})
    seconds, outcome = timed(lambda: sasl.consumer(["t"], "g"))
    print(f"SASL login refused: reported as {outcome} after {seconds:.2f} s")


if __name__ == "__main__":
    main()
