"""Process-wide settings, read from options, the environment (DIMEE_*) or a .env file."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


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
    max_text_chars: int = Field(10_000, ge=1)
    seen_ttl_s: int = Field(7 * 24 * 3600, ge=1, description="how long the router remembers a routed id")

    @property
    def data_dir(self) -> Path:
        return self.home / "data"

    @property
    def artifacts_dir(self) -> Path:
        return self.home / "artifacts"

    def api_version_tuple(self) -> tuple[int, ...] | None:
        if not self.kafka_api_version:
            return None
        return tuple(int(part) for part in self.kafka_api_version.split("."))
