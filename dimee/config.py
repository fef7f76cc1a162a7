"""Process-wide settings, read from options, the environment (DIMEE_*) or a .env file."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from dimee.choices import Guarantee
from dimee.errors import DimeeError


class Settings(BaseSettings):
    """Process-wide settings; every field can be set as DIMEE_<NAME> in the environment or a .env file."""

    model_config = SettingsConfigDict(env_prefix="DIMEE_", env_file=".env", extra="ignore")

    home: Path = Field(Path("."), description="root under which data/ and artifacts/ live")
    broker: str = Field("memory://", description="memory:// (embedded) or kafka://HOST:PORT[,HOST:PORT]")
    state: str = Field("memory://", description="memory:// (embedded) or redis://[:PASSWORD@]HOST:PORT/DB")
    topic_prefix: str = "dimee"
    kafka_api_version: str | None = Field(
        None, description="e.g. '0.9' for the old broker on these machines; empty = auto-detect"
    )
    guarantee: Guarantee = Field("auto", description="exactly-once, at-least-once, or auto: exactly-once where the "
                                 "broker has transactions (Kafka 0.11+, the embedded broker), else at-least-once")
    partitions: int = Field(3, ge=1, description="partitions of the topics dimee creates")
    replication_factor: int | None = Field(None, ge=1, description="replicas of the topics dimee creates; "
                                                                    "default min(3, brokers)")
    instance_id: str | None = Field(None, description="stable name of this process's instance (e.g. the pod "
                                                     "name): a restarted instance with the same id fences the old")
    max_text_chars: int = Field(10_000, ge=1)
    max_message_bytes: int = Field(1_000_000, ge=1024, description="largest message a stage reads or writes; "
                                                                   "keep it under the broker's max.message.bytes")
    seen_ttl_s: int = Field(7 * 24 * 3600, ge=1, description="how long the router remembers a routed id")

    @property
    def data_dir(self) -> Path:
        return self.home / "data"

    @property
    def artifacts_dir(self) -> Path:
        return self.home / "artifacts"

    def exactly_once(self, broker_has_transactions: bool) -> bool:
        if self.guarantee == "exactly-once" and not broker_has_transactions:
            raise DimeeError("--guarantee exactly-once needs a broker with transactions (Kafka 0.11 or newer)")
        return self.guarantee == "exactly-once" or (self.guarantee == "auto" and broker_has_transactions)

    def api_version_tuple(self) -> tuple[int, ...] | None:
        if not self.kafka_api_version:
            return None
        return tuple(int(part) for part in self.kafka_api_version.split("."))
