"""A client's start on the real cluster when a broker hangs or refuses the login: a hung broker (SIGSTOP: its
kernel still completes TCP handshakes, the process answers nothing) must not fail a bootstrap while others
serve, and a SASL login the broker refuses is a configuration error, said at once, not an outage."""

from __future__ import annotations

import pytest

from dimee.common.errors import DimeeError, ServiceUnavailable
from dimee.streaming.transport.kafka import KafkaTransport
from tests.support.real_services import KAFKA, KAFKA_NODES, api_version, services

pytestmark = pytest.mark.skipif(KAFKA_NODES < 3 or api_version() is not None,
                                reason="needs the 3-node KRaft cluster (its pause-broker)")


def test_a_hung_broker_does_not_fail_the_bootstrap(prefix):
    """Defect: kafka-python bootstraps from a server drawn at random and gave a hung one its whole 8 s, so a
    role failed ("Unable to bootstrap … is the broker running?") while two brokers served. Listed beside one
    live broker, the hung one was drawn about every other time: eight clients in a row all started only one
    time in 256."""
    servers = KAFKA.split(",")
    transport = KafkaTransport(f"{servers[0]},{servers[1]}", api_version())
    services("pause-broker", "1")  # node 1 listens on servers[0]
    try:
        for _ in range(8):  # each start bootstraps from the live broker (how fast: benchmarks/bootstrap_benchmark.py)
            transport.consumer([f"{prefix}.samples"], f"{prefix}-hung").close()
    finally:
        services("resume-broker", "1")


def test_a_refused_sasl_login_is_one_configuration_error():
    """SASL against the cluster's PLAINTEXT listeners, which enable no mechanism: kafka-python sees dropped
    connections and retried until "Unable to bootstrap"; the role called it an outage and retried for good."""
    transport = KafkaTransport(KAFKA, api_version(), security={
        "security_protocol": "SASL_PLAINTEXT", "sasl_mechanism": "SCRAM-SHA-512", "sasl_plain_username": "dimee",
        "sasl_plain_password": "PWwrong"})
    with pytest.raises(DimeeError, match="refuses the SASL login") as caught:
        transport.consumer(["t"], "g")
    assert not isinstance(caught.value, ServiceUnavailable) and "PWwrong" not in str(caught.value)


def test_the_predictions_client_logs_in_as_the_roles_do():
    """The client takes the roles' TLS/SASL settings (issue 30 item 2): the same refused login, the same one line."""
    from dimee.streaming.client import Predictions
    from dimee.streaming.config import Settings

    settings = Settings(broker=f"kafka://{KAFKA}", kafka_api_version=".".join(map(str, api_version() or ())) or None,
                        kafka_security_protocol="SASL_PLAINTEXT", kafka_sasl_mechanism="SCRAM-SHA-512",
                        kafka_sasl_username="dimee", kafka_sasl_password="PWwrong")
    with pytest.raises(DimeeError, match="refuses the SASL login") as caught:
        Predictions.from_settings("app", settings)
    assert not isinstance(caught.value, ServiceUnavailable) and "PWwrong" not in str(caught.value)
