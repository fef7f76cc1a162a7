"""The tiers a deployment has, their order and caps (`TierPlan`), and what running on them costs
(`CostModel`). These are the only two places that know the tier order and the price of a layer or a hop.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

import numpy as np
from pydantic import BaseModel, Field, ValidationError

from dimee.common.errors import DimeeError
from dimee.common.files import write_atomically


class Tier(StrEnum):
    MOBILE = "mobile"
    EDGE = "edge"
    CLOUD = "cloud"


# Every tier, cheapest first. Pools and tiers share an index: pool 0 (easy) is served on the mobile,
# 1 (moderate) on the edge, 2 (hard) in the cloud.
TIERS: tuple[Tier, ...] = tuple(Tier)
POOLS: tuple[str, ...] = ("easy", "moderate", "hard")
TIER_NAMES: tuple[str, ...] = tuple(t.value for t in TIERS)


@dataclass(frozen=True)
class TierPlan:
    """The ordered tiers of one deployment and the layer cap of each, e.g. mobile 2, edge 4, cloud 6. A pool is
    an index into the plan. Iterates as (tier, cap) pairs."""

    tiers: tuple[Tier, ...]
    caps: tuple[int, ...]

    @classmethod
    def of(cls, pairs: Iterable[tuple[Tier | str, int]]) -> TierPlan:
        pairs = list(pairs)
        return cls(tuple(Tier(t) for t, _ in pairs), tuple(int(c) for _, c in pairs))

    @classmethod
    def default(cls, m: int, n: int, num_layers: int) -> TierPlan:
        if not 0 < m < n < num_layers:
            raise ValueError(f"need 0 < m < n < L, got m={m}, n={n}, L={num_layers}")
        return cls(TIERS, (m, n, num_layers))

    def __iter__(self) -> Iterator[tuple[Tier, int]]:
        return iter(zip(self.tiers, self.caps, strict=True))

    def __len__(self) -> int:
        return len(self.tiers)

    def __getitem__(self, pool: int) -> tuple[Tier, int]:
        return self.tiers[pool], self.caps[pool]

    @property
    def names(self) -> tuple[str, ...]:
        """The tiers' names in plan order, as messages and reports spell them."""
        return tuple(tier.value for tier in self.tiers)

    def without(self, tier: Tier | str) -> TierPlan:
        """This plan less one tier, the others keeping their caps (the device ablation)."""
        return TierPlan.of(pair for pair in self if pair[0] is not Tier(tier))

    def index(self, tier: Tier | str) -> int:
        return self.tiers.index(Tier(tier))

    def cap(self, tier: Tier | str) -> int:
        return self.caps[self.index(tier)]

    def next_tier(self, tier: Tier | str) -> Tier | None:
        """Where a sample goes when it escalates from `tier`; None for the last tier."""
        index = self.index(tier) + 1
        return self.tiers[index] if index < len(self.tiers) else None

    def pools_of_exits(self, layers: np.ndarray) -> np.ndarray:
        """The pool of each exit layer: the first tier whose cap reaches it; beyond every cap, the last tier."""
        return np.minimum(np.searchsorted(np.asarray(self.caps), layers, side="left"), len(self) - 1)

    def pool_of_exit(self, layer: int) -> int:
        return int(self.pools_of_exits(np.asarray([layer]))[0])

    def caps_of(self, pools: np.ndarray) -> np.ndarray:
        return np.asarray(self.caps)[pools]

    def tier_indices(self, pools: np.ndarray) -> np.ndarray:
        """Pool indices of this plan → indices into TIERS (a plan may leave a tier out)."""
        return np.array([TIERS.index(t) for t in self.tiers])[pools]

    def paths(self, path_bits: np.ndarray) -> list[list[str]]:
        """Tier names visited, from a bit set per sample (bit p: pool p of this plan was visited)."""
        return [[tier.value for p, tier in enumerate(self.tiers) if bits >> p & 1] for bits in path_bits]


def hidden_state_kb(tokens: np.ndarray | int, hidden_size: int) -> np.ndarray | float:
    """KB (1000 bytes) on the wire of the hidden state a `continue` escalation carries: tokens × hidden_size fp16
    values, base64-encoded in the message (4 characters per 3 bytes)."""
    return 4 * -(-(2 * tokens * hidden_size) // 3) / 1000


class CostModel(BaseModel):
    """docs/method.md section 1: per-sample costs in units where cloud-only costs 1.0 by default. Entering a tier
    costs its offload (and, in the cloud, the platform charge); each layer run there costs its λ."""

    lambda_m: float = Field(0.1, ge=0, description="mobile processing, per layer run")
    lambda_e: float = Field(0.05, ge=0, description="edge processing, per layer run")
    lambda_c: float = Field(0.0, ge=0, description="cloud processing, per layer run")
    o_e: float = Field(0.2, ge=0, description="offload mobile -> edge")
    o_c: float = Field(0.5, ge=0, description="offload mobile -> cloud")
    kappa: float = Field(0.5, ge=0, description="cloud platform charge per sample")
    beta: float = Field(0.3, ge=0, description="reward weight of cost against confidence")
    o_hidden_per_kb: float = Field(0.0, ge=0, description="per KB (1000 bytes) on the wire of the hidden "
                                                          "state a `continue` escalation carries")

    def per_layer(self, tier: Tier | str) -> float:
        return {Tier.MOBILE: self.lambda_m, Tier.EDGE: self.lambda_e, Tier.CLOUD: self.lambda_c}[Tier(tier)]

    def offload(self, tier: Tier | str) -> float:
        return {Tier.MOBILE: 0.0, Tier.EDGE: self.o_e, Tier.CLOUD: self.o_c}[Tier(tier)]

    def platform(self, tier: Tier | str) -> float:
        return self.kappa if Tier(tier) is Tier.CLOUD else 0.0

    def entry(self, tier: Tier | str) -> float:
        """What entering a tier costs before any layer runs there."""
        return self.offload(tier) + self.platform(tier)

    def run(self, tier: Tier | str, layers_run: np.ndarray | int) -> np.ndarray | float:
        """Total cost of one hop: entering `tier` and running `layers_run` layers there (arrays welcome)."""
        return self.entry(tier) + self.per_layer(tier) * layers_run

    def breakdown(self, tier: Tier | str, layers_run: int) -> dict[str, float]:
        """Processing / offload / cloud charge of serving one sample on `tier` after `layers_run` layers."""
        parts = {"processing": self.per_layer(tier) * layers_run, "offload": self.offload(tier),
                 "cloud": self.platform(tier)}
        parts["total"] = parts["processing"] + parts["offload"] + parts["cloud"]
        return parts

    def cost(self, tier: Tier | str, layers_run: int) -> float:
        return float(self.run(tier, layers_run))

    def cloud_only(self, num_layers: int) -> float:
        """The cost of answering every sample with the whole model in the cloud: the Δcost baseline."""
        return self.cost(Tier.CLOUD, num_layers)

    def carry(self, kilobytes: np.ndarray | float) -> np.ndarray | float:
        """What carrying `kilobytes` KB of hidden state up one tier costs (escalation `continue`; arrays welcome).
        o_hidden_per_kb defaults to 0; a measured cost model (`dimee costs`) sets it."""
        return self.o_hidden_per_kb * kilobytes

    def save(self, path: Path, measured: dict | None = None) -> None:
        """The constants as a JSON object, then (from `dimee costs`) the `measured` section that load ignores."""
        document = {**self.model_dump(), **({"measured": measured} if measured is not None else {})}
        write_atomically(path, json.dumps(document, indent=2) + "\n")

    @classmethod
    def load(cls, path: Path) -> CostModel:
        """A cost model file: the constants, and optionally a `measured` section (what `dimee costs` measured),
        which is ignored here. Any other unknown key is an error, so a misspelt constant never silently falls
        back to its default."""
        try:
            data = json.loads(Path(path).read_text())
        except FileNotFoundError as exc:
            raise DimeeError(f"no cost model at {path}") from exc
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise DimeeError(f"cannot read the cost model {path}: {exc}") from exc
        if not isinstance(data, dict):
            raise DimeeError(f"{path}: a cost model is a JSON object")
        data.pop("measured", None)
        unknown = sorted(set(data) - set(cls.model_fields))
        if unknown:
            raise DimeeError(f"{path}: unknown cost model field(s) {unknown}; known: {', '.join(cls.model_fields)}")
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            first = exc.errors()[0]
            raise DimeeError(f"{path}: {'.'.join(map(str, first['loc']))}: {first['msg']}") from exc
