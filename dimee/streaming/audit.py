"""The online audit: a fixed share of the samples a lower tier answered also runs the whole model on the cloud (a
shadow: the answer stands, the audit only measures), so the stream knows without labels how often each tier's
answer disagrees with the full model's, with an exact interval.

Which samples are audited depends on the id alone (a hash), so a replayed or redelivered sample is audited or not
exactly as the first time, and every instance of a worker picks the same ones.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass, field

from dimee.method.certification import rate_interval
from dimee.streaming.messages import Audit


def audited(sample_id: str, rate: float) -> bool:
    """Whether the sample's answer is audited at `rate` (a share, 0 to 1): its id's hash, read as a number in
    [0, 1), is below the rate."""
    if rate <= 0:
        return False
    digest = hashlib.sha256(sample_id.encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < rate


@dataclass(frozen=True)
class AuditPlan:
    """Which answers are audited: those of every tier but `auditor` (the last, which runs the whole model) whose
    id `audited` picks at `rate`. The one rule for the workers that make audit copies and for the in-process run
    that waits for their audits."""

    rate: float = 0.0
    auditor: str = "cloud"

    def audits(self, tier: str, sample_id: str) -> bool:
        return tier != self.auditor and audited(sample_id, self.rate)


@dataclass
class AuditTally:
    """Audits so far, per audited tier: how many, how many disagreed, and (where labelled) who was right."""

    audits: Counter = field(default_factory=Counter)
    disagreements: Counter = field(default_factory=Counter)
    labelled: Counter = field(default_factory=Counter)
    tier_correct: Counter = field(default_factory=Counter)
    full_correct: Counter = field(default_factory=Counter)
    cost: float = 0.0

    def add(self, audit: Audit) -> None:
        tier = audit.tier.value
        self.audits[tier] += 1
        self.disagreements[tier] += int(not audit.agree)
        self.cost += audit.cost.total
        if audit.label is not None:
            self.labelled[tier] += 1
            self.tier_correct[tier] += int(audit.label_pred == audit.label)
            self.full_correct[tier] += int(audit.full_pred == audit.label)

    def summary(self, confidence: float = 0.95) -> dict[str, dict]:
        """Per audited tier: audits, disagreement share and its exact (Clopper-Pearson) interval, and the labelled
        loss against the full model (full right, tier wrong) where labels came with the samples."""
        out = {}
        for tier, n in self.audits.items():
            k, labelled = self.disagreements[tier], self.labelled[tier]
            low, high = rate_interval(k, n, confidence)
            out[tier] = {"audits": n, "disagreements": k, "disagreement": k / n, "interval": [low, high],
                         "labelled": labelled,
                         "tier_accuracy": self.tier_correct[tier] / labelled if labelled else None,
                         "full_accuracy": self.full_correct[tier] / labelled if labelled else None}
        return out
