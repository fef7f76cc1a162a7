"""Process-wide settings, read from options, the environment (DIMEE_*) or a .env file."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from dimee.common.choices import Guarantee, KafkaProtocol, SaslMechanism
from dimee.common.errors import DimeeError


def redact(url: str) -> str:
    """A service URL fit to print: the scheme, host, port and path, never a user, a password or the query (which
    may hold options such as password=). Everything up to the URL's last '@' is withheld, so a password holding
    '@', '/', '?' or '#' unencoded shows nothing of itself either."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        scheme, rest = "", url
    location = re.split(r"[?#]", rest.rpartition("@")[2], maxsplit=1)[0]
    return f"{scheme}{sep}{location}"


# HOST:PORT, the host a name, an IPv4 address or an IPv6 address in brackets.
_SERVER = re.compile(r"(?P<host>\[[0-9A-Za-z:.%]+\]|[A-Za-z0-9_.-]+):(?P<port>\d+)")


def kafka_servers(url: str) -> list[str]:
    """The bootstrap servers of kafka://HOST:PORT[,HOST:PORT] ([::1]:9092 for an IPv6 host). A malformed one
    is a DimeeError naming it: retried as an outage, it would never connect."""
    if "@" in url:
        raise DimeeError(f"{redact(url)}: kafka:// takes no user or password (set DIMEE_KAFKA_SASL_USERNAME and "
                         "DIMEE_KAFKA_SASL_PASSWORD)")
    servers = [server.strip() for server in url.removeprefix("kafka://").split(",")]
    for server in servers:
        match = _SERVER.fullmatch(server)
        if not match:
            raise DimeeError(f"{url}: {server!r} is not HOST:PORT (an IPv6 address goes in brackets, "
                             "e.g. [::1]:9092)")
        if not 0 < int(match["port"]) < 65536:
            raise DimeeError(f"{url}: port {match['port']} of {server!r} is not between 1 and 65535")
    return servers


def check_state_url(url: str) -> str:
    """A redis://, rediss:// or unix:// URL checked as redis-py will read it (other schemes are open_store's to
    refuse), else a DimeeError that shows no password."""
    scheme, _, rest = url.partition("://")
    if scheme not in ("redis", "rediss", "unix"):
        return url
    import redis.connection

    authority_end = re.search(r"[/?#]|$", rest).start()
    if scheme != "unix" and "@" in rest[authority_end:]:  # redis-py would take part of the password for the host
        raise DimeeError(f"{redact(url)}: the password holds a '/', '?' or '#': percent-encode them "
                         "(%2F, %3F, %23) in the URL")
    try:
        redis.connection.parse_url(url)
    except ValueError as exc:
        raise DimeeError(f"{redact(url)}: {exc}") from exc
    path = urlsplit(url).path
    if scheme != "unix" and not re.fullmatch(r"/?\d*", path):
        raise DimeeError(f"{redact(url)}: the path names the database by number, e.g. /0, not {path!r}")
    return url


class Settings(BaseSettings):
    """Process-wide settings; every field can be set as DIMEE_<NAME> in the environment or a .env file."""

    model_config = SettingsConfigDict(env_prefix="DIMEE_", env_file=".env", extra="ignore")

    home: Path = Field(Path("."), description="root under which data/ and artifacts/ live")
    broker: str = Field("memory://", description="memory:// (embedded) or kafka://HOST:PORT[,HOST:PORT]")
    state: str = Field("memory://", description="memory:// (embedded) or redis://[:PASSWORD@]HOST:PORT/DB")
    topic_prefix: str = "dimee"
    kafka_api_version: str | None = Field(
        None, pattern=r"^(\d+(\.\d+){0,2})?$",
        description="e.g. '0.9' or '2.8.1' for an old broker; empty = auto-detect"
    )
    guarantee: Guarantee = Field("auto", description="exactly-once, at-least-once, or auto: exactly-once where the "
                                 "broker has transactions (Kafka 0.11+, the embedded broker), else at-least-once")
    partitions: int = Field(3, ge=1, description="partitions of the topics dimee creates")
    replication_factor: int | None = Field(None, ge=1, description="replicas of the topics dimee creates; "
                                                                    "default min(3, brokers)")
    threads: int | None = Field(None, ge=1, description="torch and tokenizer threads of a stream role; default "
                                "all cores")
    device: str = Field("cpu", pattern=r"^(cpu|cuda(:\d+)?|mps)$", description="where a tier worker runs its "
                        "partition: cpu, cuda, cuda:N or mps")
    instance_id: str | None = Field(None, description="stable name of this process's instance (e.g. the pod "
                                                     "name): a restarted instance with the same id fences the old")
    kafka_security_protocol: KafkaProtocol = "PLAINTEXT"
    kafka_sasl_mechanism: SaslMechanism | None = None
    kafka_sasl_username: str | None = None
    kafka_sasl_password: SecretStr | None = Field(None, description="never printed or logged")
    kafka_ssl_cafile: Path | None = Field(None, description="CA bundle that signed the brokers' certificates")
    kafka_ssl_certfile: Path | None = Field(None, description="client certificate, for mutual TLS")
    kafka_ssl_keyfile: Path | None = None
    metrics_host: str = Field("127.0.0.1", description="address the roles' /healthz, /readyz and /metrics "
                              "listen on (0.0.0.0 in a container)")
    # 10,000 is far beyond what the encoder reads (max_length tokens): cutting there changes nothing.
    max_text_chars: int = Field(10_000, ge=1, description="longer texts are cut to this many "
                                "characters (as the offline evaluator cuts them at the default)")
    # Under Kafka's default max.message.bytes (1 MiB).
    max_message_bytes: int = Field(1_000_000, ge=1024, description="largest message a stage reads or writes; "
                                                                   "keep it under the broker's max.message.bytes")
    audit_rate: float = Field(0.05, ge=0.0, le=1.0, description="share of the samples a lower tier answers that "
                              "the full model also runs on the cloud, to measure how often they disagree (its "
                              "cost is counted)")
    control: bool = Field(False, description="run the live threshold controller (with the router): the audit "
                          "stream moves an offset on the exit thresholds below the cloud")
    control_target: float | None = Field(None, ge=0.0, le=1.0, description="the disagreement share among audited "
                                         "answers the controller aims at; default the calibration's")
    control_step: float = Field(0.02, gt=0.0, le=1.0, description="how far one audit moves the offset")
    seen_ttl_s: int = Field(3600, ge=1, description="how long the router remembers that an id moved a centroid: "
                            "at least the longest time a record may be read again (consumer lag, restarts); "
                            "each id costs about 90 bytes of Redis for this long")
    # A stage's batch limits (dimee.streaming.stage.BatchLimits takes its defaults from here; --max-wait-ms and
    # the other batch options of the roles fall back to these). Times in ms where a command line takes them.
    max_batch: int = Field(32, ge=1, description="largest micro-batch (a command may have its own default, "
                           "e.g. the router's; this variable overrides it too)")
    max_wait_ms: float = Field(20.0, ge=0.0, description="how long a partial micro-batch waits for more records")
    commit_interval_ms: float = Field(0.0, ge=0.0, description="least time between two commits (transactions) "
                                      "of a stage; 0: as soon as the broker took the previous one")
    max_queued_batches: int = Field(8, ge=1, description="most micro-batches a stage keeps back (while a commit "
                                    "runs or the interval has not passed) before it sends them as one")
    poll_timeout_s: float = Field(0.5, gt=0.0, description="longest poll of an idle stage: also how soon it "
                                  "notices a stop")
    max_poll_interval_s: float = Field(300.0, gt=0.0, description="longest time between two polls before the "
                                       "broker takes the consumer's partitions away")

    @property
    def data_dir(self) -> Path:
        return self.home / "data"

    def exactly_once(self, broker_has_transactions: bool) -> bool:
        if self.guarantee == "exactly-once" and not broker_has_transactions:
            raise DimeeError("--guarantee exactly-once needs a broker with transactions (Kafka 0.11 or newer)")
        return self.guarantee == "exactly-once" or (self.guarantee == "auto" and broker_has_transactions)

    def kafka_security(self) -> dict:
        """kafka-python's options for TLS and SASL (PLAIN, SCRAM): DIMEE_KAFKA_SECURITY_PROTOCOL=SASL_SSL,
        DIMEE_KAFKA_SASL_MECHANISM, DIMEE_KAFKA_SASL_USERNAME / _PASSWORD, DIMEE_KAFKA_SSL_CAFILE, …"""
        options: dict = {"security_protocol": self.kafka_security_protocol}
        if self.kafka_sasl_mechanism:
            password = self.kafka_sasl_password.get_secret_value() if self.kafka_sasl_password else None
            options |= {"sasl_mechanism": self.kafka_sasl_mechanism, "sasl_plain_username": self.kafka_sasl_username,
                        "sasl_plain_password": password}
        files = {"ssl_cafile": self.kafka_ssl_cafile, "ssl_certfile": self.kafka_ssl_certfile,
                 "ssl_keyfile": self.kafka_ssl_keyfile}
        return options | {name: str(path) for name, path in files.items() if path is not None}

    def api_version_tuple(self) -> tuple[int, ...] | None:
        if not self.kafka_api_version:
            return None
        return tuple(int(part) for part in self.kafka_api_version.split("."))


def setting_default(name: str) -> Any:
    """The default of a Settings field: its one home. Whatever else needs the value (BatchLimits, the command
    lines' help, open_store) reads it here instead of repeating it."""
    return Settings.model_fields[name].default
