"""Settings (environment / .env driven) and the cost model shared by calibration, evaluation and workers."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path

from pydantic import BaseModel, Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Tier(StrEnum):
    MOBILE = "mobile"
    EDGE = "edge"
    CLOUD = "cloud"


# Pools and tiers share an index: pool 0 (easy) is served on the mobile, 1 (moderate) on the edge, 2 (hard)
# in the cloud.
TIERS: tuple[Tier, Tier, Tier] = (Tier.MOBILE, Tier.EDGE, Tier.CLOUD)
POOLS: tuple[str, str, str] = ("easy", "moderate", "hard")


class CostModel(BaseModel):
    """DESIGN.md section 1: per-sample costs in units where cloud-only costs 1.0 by default."""

    lambda_m: float = Field(0.1, ge=0, description="mobile processing, per layer run")
    lambda_e: float = Field(0.05, ge=0, description="edge processing, per layer run")
    lambda_c: float = Field(0.0, ge=0, description="cloud processing, per layer run")
    o_e: float = Field(0.2, ge=0, description="offload mobile -> edge")
    o_c: float = Field(0.5, ge=0, description="offload mobile -> cloud")
    kappa: float = Field(0.5, ge=0, description="cloud platform charge per sample")
    beta: float = Field(0.3, ge=0, description="reward weight of cost against confidence")

    def breakdown(self, tier: Tier | str, layers_run: int) -> dict[str, float]:
        """Processing / offload / cloud charge of serving one sample on `tier` after `layers_run` layers."""
        tier = Tier(tier)
        if tier is Tier.MOBILE:
            parts = {"processing": self.lambda_m * layers_run, "offload": 0.0, "cloud": 0.0}
        elif tier is Tier.EDGE:
            parts = {"processing": self.lambda_e * layers_run, "offload": self.o_e, "cloud": 0.0}
        else:
            parts = {"processing": self.lambda_c * layers_run, "offload": self.o_c, "cloud": self.kappa}
        parts["total"] = parts["processing"] + parts["offload"] + parts["cloud"]
        return parts

    def cost(self, tier: Tier | str, layers_run: int) -> float:
        return self.breakdown(tier, layers_run)["total"]


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
