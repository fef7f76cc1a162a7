"""Costs from measurement (`dimee costs`, docs/costs.md): on the machine it runs on, the per-layer latency of
every tier partition and the bytes every hop carries, turned into a `CostModel` with prices the user gives.

The conversion, per sample (KB = 1000 bytes on the wire):

    λ_t  = price per ms on tier t × measured ms per sample per layer of t's partition
    o_e  = edge charge  + price per KB of the edge link  × KB(routed message up + prediction back)
    o_c  =                price per KB of the cloud link × KB(routed message up + prediction back)
    κ    = cloud charge
    o_hidden_per_kb = price per KB of hidden state carried by a `continue` escalation

Normalised (the default), every constant but β is divided by what a cloud-only sample costs at those prices
(o_c + κ + λ_c·L), so a cloud-only sample costs exactly 1.0: the units of docs/method.md's constants and of every
report. The router runs on the mobile, so the mobile's own routed message is free.

torch is imported only where a model runs, so prices and files can be handled without it.
"""

from dimee.offline.costs.figures import Measured, TierFigures, measure
from dimee.offline.costs.inputs import Texts, plan_for, texts_from_file, texts_from_split
from dimee.offline.costs.latency import MeasureConfig
from dimee.offline.costs.pricing import Pricing, priced, write_cost_model

__all__ = ["MeasureConfig", "Measured", "Pricing", "Texts", "TierFigures", "measure", "plan_for", "priced",
           "texts_from_file", "texts_from_split", "write_cost_model"]
