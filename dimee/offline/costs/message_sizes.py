"""Bytes per hop: the JSON size of the messages every tier receives and sends, built as the router and the
workers build them."""

from __future__ import annotations

import base64
import os
import platform
import statistics
import time
from dataclasses import dataclass

from dimee.common.workdir import Workdir
from dimee.method.tiers import Tier, TierPlan
from dimee.offline.costs.inputs import Texts
from dimee.streaming.messages import CostBreakdown, Hop, Prediction, Routed, Timings

# Float fields of the messages sized here carry full-precision values (17 digits), as measured costs,
# confidences and distances do on the wire: a short stand-in such as 0.2 would understate every message.
_FULL = 1 / 3


@dataclass(frozen=True)
class HopBytes:
    """Mean bytes of the messages one tier receives and sends (None: the tier escalates to no other)."""

    routed: float
    prediction: float
    escalation: float | None
    hidden: float | None


def _routed(index: int, text: str, pair: str | None, tier: Tier, pool: int) -> Routed:
    """The message the router sends a tier, with every field a real one carries."""
    return Routed(id=f"sample-{index:08d}", text=text, text_pair=pair, tier=tier, pool=pool,
                  distances=[_FULL * (k + 1) for k in range(3)], centroid_version=1,
                  router=f"router-{platform.node()}-{os.getpid()}", digest="0" * 16)


def _escalated(routed: Routed, plan: TierPlan, tokens: int, hidden_size: int) -> Routed:
    """The `continue` escalation of `routed` from its tier: one more hop and the fp16 hidden state at the cap,
    packed as workers.tier_worker.pack_hidden packs it (base64 of tokens × hidden fp16 values)."""
    tier, cap = routed.tier, plan.cap(routed.tier)
    hop = Hop(tier=tier, layers_run=cap, cost=CostBreakdown(processing=_FULL, offload=_FULL, cloud=_FULL, total=_FULL))
    blob = base64.b64encode(bytes(2 * tokens * hidden_size)).decode("ascii")
    return routed.model_copy(update={"tier": plan.next_tier(tier), "hops": [hop], "start_layer": cap,
                                     "hidden_fp16": blob})


def _prediction(routed: Routed, cap: int) -> Prediction:
    now = time.time()
    worker = f"worker-{routed.tier.value}-{platform.node()}-{os.getpid()}"
    return Prediction(id=routed.id, tier=routed.tier, label_pred=1, confidence=_FULL, exit_layer=cap, layers_run=cap,
                      cost=CostBreakdown(processing=_FULL, offload=_FULL, cloud=_FULL, total=_FULL),
                      model=f"model:{routed.tier.value}:1-{cap}", worker=worker, pool=routed.pool, path=[routed.tier],
                      digest=routed.digest, timings=Timings(produced_at=now, routed_at=now, started_at=now,
                                                            finished_at=now))


def token_counts(workdir: Workdir, texts: Texts) -> list[int]:
    """Tokens per text as a worker encodes it: the length of the hidden state an escalation carries."""
    from dimee.model import tokenize
    from dimee.model.artifacts import load_tokenizer
    from dimee.model.spec import load_spec

    return tokenize.token_counts(load_tokenizer(workdir.model), texts.texts, texts.pairs,
                                 load_spec(workdir.model).max_length)


def hop_bytes(plan: TierPlan, texts: Texts, tokens: list[int], hidden_size: int) -> dict[Tier, HopBytes]:
    """Mean JSON bytes (as sent: Message.to_bytes) of each tier's routed message, its prediction and, where a
    next tier exists, its `continue` escalation and the hidden state inside it."""
    pairs = texts.pairs or [None] * len(texts)
    out = {}
    for pool, (tier, cap) in enumerate(plan):
        routed = [_routed(i, text, pair, tier, pool) for i, (text, pair) in enumerate(zip(texts.texts, pairs,
                                                                                          strict=True))]
        up, down = [len(r.to_bytes()) for r in routed], [len(_prediction(r, cap).to_bytes()) for r in routed]
        escalation = hidden = None
        if plan.next_tier(tier) is not None:
            onward = [_escalated(r, plan, n, hidden_size) for r, n in zip(routed, tokens, strict=True)]
            escalation = statistics.fmean(len(e.to_bytes()) for e in onward)
            hidden = statistics.fmean(len(e.hidden_fp16 or "") for e in onward)
        out[tier] = HopBytes(statistics.fmean(up), statistics.fmean(down), escalation, hidden)
    return out
