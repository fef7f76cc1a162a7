"""A Redis that refuses writes (out of memory, a read-only replica after a failover) is a service condition, never a
per-message error (issue 28: OOM dead-lettered 16 of 30); and a worker whose store refuses its audit-copy records
goes on serving (the copies still go out; their audits are refused), without calling the store for every batch."""

from __future__ import annotations

import pytest
import redis
from dimee.state import namespace
from dimee.state.memory import InMemoryCentroidStore
from dimee.state.redis_store import RedisCentroidStore
from dimee.workers import audit_copies
from dimee.workers.audit_copies import AuditCopies

from dimee.common.errors import ServiceUnavailable
from dimee.streaming import metrics


def _replying(monkeypatch, reply: str) -> RedisCentroidStore:
    """A store whose Redis answers every pipeline with the error `reply` (it connects on first use only, and a
    pipeline only when it runs, so no Redis is needed)."""

    def execute(pipe, raise_on_error=True):
        command = " ".join(str(arg) for arg in pipe.command_stack[0][0])  # as redis-py names the failed one
        raise redis.ResponseError(f"Command # 1 ({command}) of pipeline caused error: {reply}")

    monkeypatch.setattr(redis.client.Pipeline, "execute", execute)
    return RedisCentroidStore("redis://127.0.0.1:1/0", namespace("p", "m"))


@pytest.mark.parametrize("refusal", ["OOM command not allowed when used memory > 'maxmemory'.",
                                     "READONLY You can't write against a read only replica."])
def test_a_refusing_redis_is_waited_for_not_dead_lettered(monkeypatch, refusal):
    with pytest.raises(ServiceUnavailable, match="refuses the command"):
        _replying(monkeypatch, refusal).mark_audit_copies({"a": "edge:1"})


def test_another_redis_error_is_not_taken_for_a_refusal(monkeypatch):
    with pytest.raises(redis.ResponseError, match="ERR syntax error"):
        _replying(monkeypatch, "ERR syntax error").mark_audit_copies({"a": "edge:1"})


class Refusing(InMemoryCentroidStore):
    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def mark_audit_copies(self, copies: dict[str, str]) -> None:
        self.calls += 1
        raise ServiceUnavailable("Redis at redis://r:6379/0 refuses the command: OOM command not allowed")


def test_a_worker_goes_on_when_its_audit_copies_cannot_be_recorded(monkeypatch):
    clock = [1000.0]
    monkeypatch.setattr(audit_copies.time, "monotonic", lambda: clock[0])
    store = Refusing()
    copies = AuditCopies(store, "edge")
    unrecorded = metrics.AUDIT_COPIES_UNRECORDED.labels("edge")._value.get()
    copies.record({"a": "edge:1", "b": "edge:0"})  # no exception: serving goes on
    copies.record({"c": "edge:1"})  # within the pause: the store is left alone
    assert store.calls == 1
    clock[0] += audit_copies.PAUSE_S + 1
    copies.record({"d": "edge:1"})
    assert store.calls == 2
    assert metrics.AUDIT_COPIES_UNRECORDED.labels("edge")._value.get() - unrecorded == 4


def test_the_namespace_names_the_pipeline_and_the_model_in_one_hash_tag():
    assert namespace("dimee", "rt-sentences-0123456789ab") == "dimee:{dimee/rt-sentences-0123456789ab}"


@pytest.mark.parametrize("refusal", [
    redis.exceptions.MasterDownError("Link with MASTER is down and replica-serve-stale-data is set to 'no'."),
    redis.exceptions.TryAgainError("Multiple keys request during rehashing of slot"),
    redis.ResponseError("Command # 1 (HMGET k mean) of pipeline caused error: MISCONF Redis is configured to save "
                        "RDB snapshots, but it's currently unable to persist to disk."),
], ids=["masterdown", "tryagain", "misconf-in-a-pipeline"])
def test_every_refusal_is_an_outage_however_redis_py_words_it(refusal):
    """Defect: redis-py maps MASTERDOWN and TRYAGAIN to classes without the prefix, and a pipeline rewrites a reply's
    text; the store did not recognise them, and the router dead-lettered its samples during a replica failover."""
    store = RedisCentroidStore("redis://127.0.0.1:1/0", namespace("p", "m"))  # never connects: the call raises first

    def refuse(*args, **kwargs):
        raise refusal

    store.client.hget = refuse
    with pytest.raises(ServiceUnavailable, match="refuses the command"):
        store.snapshot()
