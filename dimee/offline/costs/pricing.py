"""Prices → cost model: the measured figures turned into a `CostModel` with the user's prices (the conversion
is in the package docstring), and the file that keeps both."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path

from dimee.common.errors import DimeeError
from dimee.method.tiers import CostModel, Tier
from dimee.offline.costs.figures import Measured, TierFigures


@dataclass(frozen=True)
class Pricing:
    """What a ms of compute on each tier, a KB on each link and a request cost, in any one unit (see the package
    docstring). The defaults count in mobile-millisecond equivalents and echo docs/method.md's choices: an edge ms
    costs half a mobile ms, cloud compute is inside the cloud charge, the cloud link costs twice the edge link
    per KB, and the hidden state travels at the edge link's price. Normalised, only their ratios matter."""

    price_per_ms_mobile: float = 1.0
    price_per_ms_edge: float = 0.5
    price_per_ms_cloud: float = 0.0
    price_per_kb_edge: float = 1.0
    price_per_kb_cloud: float = 2.0
    price_per_kb_hidden: float | None = None  # None: the edge link's price
    edge_charge: float = 5.0
    cloud_charge: float = 20.0
    beta: float = 0.3
    normalise: bool = True

    def __post_init__(self) -> None:
        for name, value in asdict(self).items():
            if isinstance(value, float) and not (math.isfinite(value) and value >= 0):
                raise DimeeError(f"--{name.replace('_', '-')} must be a finite number ≥ 0, not {value}")


_SCALED = ("lambda_m", "lambda_e", "lambda_c", "o_e", "o_c", "kappa", "o_hidden_per_kb")


def raw_cost_model(measured: Measured, pricing: Pricing) -> CostModel:
    """The constants in the prices' own units (a tier missing from the plan costs nothing)."""

    def of(tier: Tier) -> TierFigures:
        return measured.tier(tier) or TierFigures(tier=tier, layers=0, ms_per_layer=0.0, layer_ms=[],
                                                  embedding_ms=0.0, routed_bytes=0.0, prediction_bytes=0.0)

    hidden = pricing.price_per_kb_edge if pricing.price_per_kb_hidden is None else pricing.price_per_kb_hidden
    return CostModel(lambda_m=pricing.price_per_ms_mobile * of(Tier.MOBILE).ms_per_layer,
                     lambda_e=pricing.price_per_ms_edge * of(Tier.EDGE).ms_per_layer,
                     lambda_c=pricing.price_per_ms_cloud * of(Tier.CLOUD).ms_per_layer,
                     o_e=pricing.edge_charge + pricing.price_per_kb_edge * of(Tier.EDGE).link_kb,
                     o_c=pricing.price_per_kb_cloud * of(Tier.CLOUD).link_kb,
                     kappa=pricing.cloud_charge, beta=pricing.beta, o_hidden_per_kb=hidden)


def priced(measured: Measured, pricing: Pricing) -> tuple[CostModel, Measured]:
    """The cost model (normalised so that cloud-only costs 1.0, unless pricing says not to) and the figures
    with the pricing and the raw cloud-only cost they were turned with."""
    raw = raw_cost_model(measured, pricing)
    cloud_only = raw.cloud_only(measured.num_layers)
    noted = measured.model_copy(update={"pricing": asdict(pricing), "raw_cloud_only": cloud_only})
    if not pricing.normalise:
        return raw, noted
    if not (math.isfinite(cloud_only) and cloud_only > 0):
        raise DimeeError("cannot normalise: a cloud-only sample costs 0 at these prices (give --cloud-charge, "
                         "--price-per-ms-cloud or --price-per-kb-cloud, or pass --no-normalise)")
    return raw.model_copy(update={name: getattr(raw, name) / cloud_only for name in _SCALED}), noted


def write_cost_model(path: Path, cost: CostModel, measured: Measured) -> None:
    """The CostModel fields, then the `measured` section (which CostModel.load ignores)."""
    cost.save(path, measured.model_dump(mode="json"))
