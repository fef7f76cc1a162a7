"""How a Kafka client's start fails, without a broker: a hung server is no bootstrap server (and is said so
within the probe's 3 s, not after kafka-python's 8 s bootstrap), and a refused login or permission is a
configuration error the role exits on, not an outage it retries for good."""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterator

import pytest
from kafka import errors as kafka_errors

import dimee.streaming.transport.kafka as kafka_transport
from dimee.common.errors import DimeeError, ServiceUnavailable
from dimee.streaming.transport.kafka import KafkaTransport


@contextlib.contextmanager
def hung_server(host: str = "127.0.0.1", family: socket.AddressFamily = socket.AF_INET) -> Iterator[int]:
    """A port whose connections the kernel completes and nobody answers: what a SIGSTOPped broker looks like."""
    with socket.socket(family) as listener:
        listener.bind((host, 0))
        listener.listen(16)
        yield listener.getsockname()[1]


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_a_server_that_accepts_but_never_answers_is_not_bootstrapped_from():
    """Defect: a TCP connect was taken for a live broker, and kafka-python then spent its whole bootstrap on it."""
    with hung_server() as hung:
        transport = KafkaTransport(f"127.0.0.1:{hung},127.0.0.1:{closed_port()}")
        with pytest.raises(ServiceUnavailable, match=rf"127\.0\.0\.1:{hung}: no answer in 3 s") as caught:
            transport.consumer(["t"], "g")
    assert "ECONNREFUSED" in str(caught.value) and "is the broker running?" in str(caught.value)


def test_an_ipv6_bootstrap_server_is_probed_over_ipv6():
    try:
        server = hung_server("::1", socket.AF_INET6)
        port = server.__enter__()
    except OSError:
        pytest.skip("no IPv6 loopback here")
    try:
        with pytest.raises(ServiceUnavailable, match=rf"\[::1\]:{port}: no answer in 3 s"):
            KafkaTransport(f"[::1]:{port}").producer()
    finally:
        server.__exit__(None, None, None)


def test_a_malformed_server_is_refused_before_any_connection():
    for servers, expected in [("host:99999", "not between 1 and 65535"), ("::1:9092", "in brackets"),
                              ("a:1,b", "'b' is not HOST:PORT")]:
        with pytest.raises(DimeeError, match=expected) as caught:
            KafkaTransport(servers)
        assert not isinstance(caught.value, ServiceUnavailable)


REFUSALS = [kafka_errors.SaslAuthenticationFailedError("Authentication failed: Invalid username or password"),
            kafka_errors.UnsupportedSaslMechanismError("enabled mechanisms: ['PLAIN']"),
            kafka_errors.IllegalSaslStateError(), kafka_errors.TopicAuthorizationFailedError(),
            kafka_errors.TransactionalIdAuthorizationFailedError()]


@pytest.mark.parametrize("refusal", REFUSALS, ids=lambda e: type(e).__name__)
@pytest.mark.parametrize("client", ["consumer", "producer", "transactional producer", "admin"])
def test_a_refused_login_or_permission_is_a_configuration_error_not_an_outage(monkeypatch, refusal, client):
    """Defect: a wrong SASL password or mechanism read "cannot reach Kafka …; is the broker running?" and the
    role retried for good. Where kafka-python raises the refusal itself, it is a DimeeError, not
    ServiceUnavailable: the role exits with one line."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise refusal

    monkeypatch.setattr(KafkaTransport, "_reachable", lambda self, timeout_s=3.0: ["127.0.0.1:9092"])  # no network
    for name in ("KafkaConsumer", "KafkaProducer", "KafkaAdminClient"):
        monkeypatch.setattr(kafka_transport, name, refuse)
    transport = KafkaTransport("127.0.0.1:9092", security={
        "security_protocol": "SASL_PLAINTEXT", "sasl_mechanism": "SCRAM-SHA-512", "sasl_plain_username": "dimee",
        "sasl_plain_password": "PWsecret"})
    start = {"consumer": lambda: transport.consumer(["t"], "g"), "producer": transport.producer,
             "transactional producer": lambda: transport.producer("dimee-router-0"),
             "admin": lambda: transport.ensure_topics(["t"])}[client]
    with pytest.raises(DimeeError, match="authentication or configuration error, not an outage") as caught:
        start()
    assert not isinstance(caught.value, ServiceUnavailable)
    assert type(refusal).__name__ in str(caught.value) and "PWsecret" not in str(caught.value)


def test_an_outage_stays_an_outage(monkeypatch):
    def time_out(*args: object, **kwargs: object) -> None:
        raise kafka_errors.KafkaTimeoutError("Unable to bootstrap from ['127.0.0.1:9092']")

    monkeypatch.setattr(KafkaTransport, "_reachable", lambda self, timeout_s=3.0: ["127.0.0.1:9092"])
    monkeypatch.setattr(kafka_transport, "KafkaConsumer", time_out)
    with pytest.raises(ServiceUnavailable, match=r"is the broker running\?"):
        KafkaTransport("127.0.0.1:9092").consumer(["t"], "g")
