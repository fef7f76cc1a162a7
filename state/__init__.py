"""Centroid state shared by routers: Redis in production, in-memory for the embedded default and unit tests.
`open_store` picks the implementation by URL; the interface (`state.base`) knows none of them."""

from dimee.state.base import CentroidSnapshot, CentroidStore, NotSeeded, Update, namespace

from dimee.common.errors import DimeeError
from dimee.streaming.config import check_state_url, redact, setting_default


def open_store(url: str, state_id: str, seen_ttl_s: int = setting_default("seen_ttl_s"), *,
               pipeline: str) -> CentroidStore:
    """The state of one pipeline (`pipeline`: its topic prefix) of one model (`state_id`: `Deployment.state_id`)."""
    where = namespace(pipeline, state_id)
    if url.startswith("memory://"):
        from dimee.state.memory import shared_store

        return shared_store(url, where)
    if url.startswith(("redis://", "rediss://", "unix://")):
        from dimee.state.redis_store import RedisCentroidStore

        return RedisCentroidStore(check_state_url(url), where, seen_ttl_s)  # a bad URL: one line, not a traceback
    raise DimeeError(f"unknown state store {redact(url)!r}: use memory:// or redis://HOST:PORT/DB (rediss:// for TLS)")


__all__ = ["CentroidSnapshot", "CentroidStore", "NotSeeded", "Update", "namespace", "open_store"]
