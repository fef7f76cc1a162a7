"""A worker's record of the audit copies it makes, in the pipeline's state store: the sample id and the answer the
copy asks the full model to check (`state.base.copy_mark`). The controller applies an audit only against such a
record, and consumes it (routers/controller.py): so an audit nobody asked for, or one of another answer, counts for
nothing. Recording never holds up serving: a store that is unreachable or refuses writes is left alone for a while
(the copies still go out, their audits are refused), with a log line and `dimee_audit_copies_unrecorded_total`."""

from __future__ import annotations

import time

from dimee.state import CentroidStore, open_store

from dimee.streaming import metrics
from dimee.streaming.config import Settings, redact
from dimee.streaming.runtime import log

PAUSE_S = 30.0  # after a failed write, how long the store is left alone (a paused Redis holds a write 5 s)


class AuditCopies:
    def __init__(self, store: CentroidStore | None, tier: str) -> None:
        self.store, self.tier = store, tier
        self._paused_until = 0.0

    @classmethod
    def open(cls, settings: Settings, state_id: str, tier: str, stage: str) -> AuditCopies:
        """The pipeline's store where this worker makes audit copies (a tier below the last, a rate above 0)."""
        if settings.state.startswith("memory://") and not settings.broker.startswith("memory://"):
            # a store in this process alone: no controller could read it, and the records would only pile up
            log.warning("audit copies not recorded: the state store is this process's memory; if a threshold "
                        "controller runs, it refuses their audits (then give this worker the router's DIMEE_STATE)",
                        stage=stage, state=redact(settings.state))
            return cls(None, tier)
        return cls(open_store(settings.state, state_id, settings.seen_ttl_s, pipeline=settings.topic_prefix), tier)

    def record(self, copies: dict[str, str]) -> None:
        if not copies or self.store is None:
            return
        if time.monotonic() < self._paused_until:
            metrics.AUDIT_COPIES_UNRECORDED.labels(self.tier).inc(len(copies))
            return
        try:
            self.store.mark_audit_copies(copies)
        except Exception as exc:  # unreachable, refusing writes, anything: never a reason to stop serving
            self._paused_until = time.monotonic() + PAUSE_S
            metrics.AUDIT_COPIES_UNRECORDED.labels(self.tier).inc(len(copies))
            log.warning("audit copies not recorded: the controller will refuse their audits", tier=self.tier,
                        copies=len(copies), error=str(exc), retry_in_s=PAUSE_S)
