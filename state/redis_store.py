"""Centroids and the threshold control in Redis, under one pipeline's namespace `dimee:{PIPELINE/STATE_ID}`
(`state.base.namespace`; docs/streaming.md lists the keys). One script touches one slot: the braces are a
cluster hash tag.

A batch of adaptive updates is two round trips, whatever its size: read the centroids, compute the moves
(`state.base.moves`, the same code as the in-memory store), then one Lua script that writes them only if
no pool it moves changed meanwhile (its version) and no sample id was seen before — setting the seen-markers
in the same atomic step. Otherwise nothing is written and the batch is computed again: without the seen ids,
or from the centroids as they now are. So a replayed message never moves a centroid twice and concurrent
routers never lose an update (optimistic concurrency; a busy pool costs a retry, not a lock). A batch of audits
moves the control the same way: read it with the audit-copy records and seen-markers, compute
(`state.base.control_steps`), then one script that writes only if nothing it read changed.
"""

from __future__ import annotations

import time

import numpy as np
import redis
from dimee.state.base import (
    CONTROL_FIELDS,
    RESTORE_HINT,
    BadControl,
    CentroidSnapshot,
    NotSeeded,
    RefusesWrites,
    Steps,
    Update,
    Verdict,
    control_steps,
    moves,
    read_control,
    write_control,
)

from dimee.common.errors import DimeeError, ServiceUnavailable
from dimee.method.control import Control, ControlRule, ControlState
from dimee.streaming.config import redact, setting_default

# KEYS: the pools moved, then the seen-markers of the batch's sample ids.
# ARGV: pools moved, seen TTL, then per pool: the version read, the new mean, the new count, updates applied.
# Returns {1} written; {-1} a pool's version moved; {0, i, ...} these ids (1-based) were seen already.
MOVE_SCRIPT = """
local pools = tonumber(ARGV[1])
for i = 1, pools do
  local version = tonumber(redis.call('HGET', KEYS[i], 'version') or '0')
  if version ~= tonumber(ARGV[2 + 4 * (i - 1) + 1]) then
    return {-1}
  end
end
local seen = {0}
for j = pools + 1, #KEYS do
  if redis.call('EXISTS', KEYS[j]) == 1 then
    seen[#seen + 1] = j - pools
  end
end
if #seen > 1 then
  return seen
end
for j = pools + 1, #KEYS do
  redis.call('SET', KEYS[j], '1', 'EX', tonumber(ARGV[2]))
end
for i = 1, pools do
  local at = 2 + 4 * (i - 1)
  redis.call('HSET', KEYS[i], 'mean', ARGV[at + 2], 'count', ARGV[at + 3])
  redis.call('HINCRBY', KEYS[i], 'version', tonumber(ARGV[at + 4]))
end
return {1}
"""
# KEYS: meta, then every pool. ARGV: pools, dim, seeded_at, then per pool: count, packed mean ('' if empty).
# Writes only the keys that are missing; returns how many pools it wrote.
RESTORE_SCRIPT = """
local restored = 0
for i = 2, #KEYS do
  if redis.call('EXISTS', KEYS[i]) == 0 then
    local at = 4 + 2 * (i - 2)
    redis.call('HSET', KEYS[i], 'count', ARGV[at], 'version', 0)
    if ARGV[at + 1] ~= '' then
      redis.call('HSET', KEYS[i], 'mean', ARGV[at + 1])
    end
    restored = restored + 1
  end
end
if redis.call('EXISTS', KEYS[1]) == 0 then
  redis.call('HSET', KEYS[1], 'pools', ARGV[1], 'dim', ARGV[2], 'seeded_at', ARGV[3])
end
return restored
"""
# KEYS: the control hash, then per applied audit: its copy's record, its seen-marker. ARGV: the version read, the seen
# TTL, the new offset, version and anchor, then per applied audit the answer its copy recorded. Returns {1} written;
# {-1} something it was computed from changed (the version, a copy's record, a seen-marker): computed again.
CONTROL_SCRIPT = """
if tonumber(redis.call('HGET', KEYS[1], 'version') or '0') ~= tonumber(ARGV[1]) then
  return {-1}
end
for j = 2, #KEYS, 2 do
  if redis.call('GET', KEYS[j]) ~= ARGV[6 + (j - 2) / 2] or redis.call('EXISTS', KEYS[j + 1]) == 1 then
    return {-1}
  end
end
for j = 2, #KEYS, 2 do
  redis.call('DEL', KEYS[j])
  redis.call('SET', KEYS[j + 1], '1', 'EX', tonumber(ARGV[2]))
end
redis.call('HSET', KEYS[1], 'offset', ARGV[3], 'version', ARGV[4], 'anchor', ARGV[5])
return {1}
"""
# What Redis says when it refuses a command for a while (out of memory, a read-only replica after a failover, a
# failed snapshot, a busy script, still loading): a service condition to wait out, never a reason to dead-letter.
REFUSING = ("OOM", "READONLY", "MISCONF", "BUSY", "LOADING", "MASTERDOWN", "NOREPLICAS", "TRYAGAIN", "CLUSTERDOWN")
REFUSING_CLASSES = (redis.exceptions.OutOfMemoryError, redis.exceptions.ReadOnlyError, redis.exceptions.MasterDownError,
                    redis.exceptions.TryAgainError, redis.exceptions.ClusterDownError)
MAX_ATTEMPTS = 50  # each lost race means another router moved the pool: progress is being made


def pack(vector: np.ndarray) -> bytes:
    return np.asarray(vector, dtype="<f8").tobytes()


def unpack(blob: bytes) -> np.ndarray:
    return np.frombuffer(blob, dtype="<f8").copy()


class RedisUnavailable(ServiceUnavailable):
    """Redis unreachable or too contended: named as Redis in the retry metrics and logs, not
    as the stage call that met it ("process")."""

    service = "redis"


class RedisCentroidStore:
    def __init__(self, url: str, namespace: str, seen_ttl_s: int = setting_default("seen_ttl_s")) -> None:
        """`namespace`: the pipeline's (`state.base.namespace`)."""
        self.url = url
        self.namespace = namespace
        self.seen_ttl_s = seen_ttl_s
        self.client = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=3)
        self._move = self.client.register_script(MOVE_SCRIPT)
        self._restore = self.client.register_script(RESTORE_SCRIPT)
        self._control = self.client.register_script(CONTROL_SCRIPT)

    def _key(self, *parts: object) -> str:
        return ":".join([self.namespace, *(str(p) for p in parts)])

    def _pattern(self, *parts: object) -> str:
        """A SCAN pattern for this namespace's keys under `parts`: the namespace's own glob characters escaped,
        so it never matches another pipeline's keys."""
        return "".join(f"\\{c}" if c in "*?[]\\" else c for c in self._key(*parts)) + ":*"

    def _call(self, fn, *args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            raise RedisUnavailable(f"cannot reach Redis at {self._host} ({exc.__class__.__name__})") from exc
        except redis.ResponseError as exc:
            # redis-py maps "OOM …", "READONLY …" and others to classes and drops the prefix, and a pipeline puts
            # "Command # N (…) of pipeline caused error: " before the reply: both are looked through
            reply = str(exc).rsplit("caused error: ", 1)[-1]
            if isinstance(exc, REFUSING_CLASSES) or reply.startswith(REFUSING):
                raise RefusesWrites(f"Redis at {self._host} refuses the command: {str(exc)[:200]}") from exc
            raise

    @property
    def _host(self) -> str:
        return redact(self.url)

    def check_not_evicting(self) -> None:
        """Adaptive routing needs every centroid and seen-marker kept: a Redis that may evict keys under memory
        pressure (any maxmemory-policy but noeviction) could drop a marker and move a centroid twice."""
        try:
            policy = self._call(self.client.config_get, "maxmemory-policy").get("maxmemory-policy")
        except redis.ResponseError:  # CONFIG is disabled on some managed Redis: the operator must see to it
            return
        if policy not in (None, "noeviction"):
            raise DimeeError(f"Redis at {self._host} may evict keys (maxmemory-policy {policy}): adaptive routing "
                             "needs maxmemory-policy noeviction")

    def seed(self, means: list[np.ndarray | None], counts: list[int]) -> None:
        dim = next((len(m) for m in means if m is not None), 0)

        def write(pipe: redis.client.Pipeline) -> None:
            for pattern in (self._pattern("seen"), self._pattern("control-seen")):
                for key in self.client.scan_iter(match=pattern, count=1000):
                    pipe.delete(key)
            pipe.delete(self._key("control"))
            for pool, (mean, count) in enumerate(zip(means, counts, strict=True)):
                key = self._key("pool", pool)
                pipe.delete(key)
                pipe.hset(key, mapping={"count": count, "version": 0})
                if mean is not None:
                    pipe.hset(key, "mean", pack(mean))
            pipe.hset(self._key("meta"), mapping={"pools": len(means), "dim": dim, "seeded_at": time.time()})

        def transaction() -> None:
            with self.client.pipeline(transaction=True) as pipe:
                write(pipe)
                pipe.execute()

        self._call(transaction)

    def restore(self, means: list[np.ndarray | None], counts: list[int]) -> int:
        dim = next((len(m) for m in means if m is not None), 0)
        args: list = [len(means), dim, time.time()]
        for mean, count in zip(means, counts, strict=True):
            args += [count, b"" if mean is None else pack(mean)]
        keys = [self._key("meta"), *(self._key("pool", pool) for pool in range(len(means)))]
        return int(self._call(self._restore, keys=keys, args=args))

    def is_seeded(self) -> bool:
        return bool(self._call(self.client.exists, self._key("meta")))

    def snapshot(self) -> CentroidSnapshot:
        pools = self._call(self.client.hget, self._key("meta"), "pools")
        if pools is None:
            raise NotSeeded(f"no centroids in Redis at {self._host} under {self.namespace} (never seeded, or "
                            f"lost: a flush, a restart without persistence, a failover); {RESTORE_HINT}")
        try:
            rows = self._read_pools(int(pools), atomically=True)
        except RefusesWrites:  # out of memory, Redis refuses whatever is queued in MULTI, reads too
            rows = self._read_pools(int(pools), atomically=False)  # each pool's row is still read whole
        lost = [pool for pool, (_, _, version) in enumerate(rows) if version is None]  # a seeded pool has one
        if lost:
            raise NotSeeded(f"pools {lost} are missing from Redis at {self._host} under {self.namespace}; "
                            f"{RESTORE_HINT}")
        means = [None if mean is None else unpack(mean) for mean, _, _ in rows]
        return CentroidSnapshot(means, [int(c or 0) for _, c, _ in rows], [int(v or 0) for _, _, v in rows])

    def _read_pools(self, pools: int, atomically: bool) -> list:
        with self.client.pipeline(transaction=atomically) as pipe:
            for pool in range(pools):
                pipe.hmget(self._key("pool", pool), "mean", "count", "version")
            return self._call(pipe.execute)

    def apply(self, updates: list[Update], read: CentroidSnapshot | None = None) -> list[bool]:
        seen: set[str] = set()
        for attempt in range(MAX_ATTEMPTS):
            snapshot = read if attempt == 0 and read is not None else self.snapshot()
            done = moves(updates, snapshot.means, snapshot.counts, seen)
            applied = [u.sample_id for u, ok in zip(updates, done.applied, strict=True) if ok]
            if not applied:
                return done.applied
            pools = sorted(done.means)
            args: list = [len(pools), self.seen_ttl_s]
            for pool in pools:
                args += [snapshot.versions[pool], pack(done.means[pool]), done.counts[pool], done.moved_by[pool]]
            keys = [self._key("pool", pool) for pool in pools] + [self._key("seen", i) for i in applied]
            result = self._call(self._move, keys=keys, args=args)
            if int(result[0]) == 1:
                return done.applied
            seen.update(applied[int(i) - 1] for i in result[1:])  # replays: computed again without them
        raise RedisUnavailable(f"Redis at {self._host}: the centroids kept changing under this router "
                               f"({MAX_ATTEMPTS} attempts); retrying the batch")

    def control(self) -> Control:
        return self.control_state().control

    def control_state(self) -> ControlState:
        return read_control(dict(zip(CONTROL_FIELDS, self._control_fields(), strict=True)))

    def _control_fields(self) -> list:
        try:
            return self._call(self.client.hmget, self._key("control"), *CONTROL_FIELDS)
        except redis.ResponseError as exc:  # WRONGTYPE: a key of another type where the hash should be
            raise BadControl(f"the stored threshold control is unreadable: {str(exc)[:200]}") from exc

    def mark_audit_copies(self, copies: dict[str, str]) -> None:
        if not copies:
            return
        with self.client.pipeline(transaction=False) as pipe:
            for audit_id, answer in copies.items():
                pipe.set(self._key("audit-copy", audit_id), answer, ex=self.seen_ttl_s)
            self._call(pipe.execute)

    def _read_for_control(self, verdicts: list[Verdict]) -> tuple[ControlState, dict[str, str | None], set[str]]:
        """The control, the audit-copy records and the seen-markers of the verdicts' ids, in one round trip."""
        ids = list(dict.fromkeys(v.audit_id for v in verdicts))
        with self.client.pipeline(transaction=True) as pipe:
            pipe.hmget(self._key("control"), *CONTROL_FIELDS)
            for audit_id in ids:
                pipe.get(self._key("audit-copy", audit_id))
                pipe.exists(self._key("control-seen", audit_id))
            try:
                rows = self._call(pipe.execute)
            except redis.ResponseError as exc:
                raise BadControl(f"the stored threshold control is unreadable: {str(exc)[:200]}") from exc
        state = read_control(dict(zip(CONTROL_FIELDS, rows[0], strict=True)))
        marks = zip(ids, rows[1::2], strict=True)
        copies = {i: None if mark is None else mark.decode("utf-8", "replace") for i, mark in marks}
        return state, copies, {i for i, seen in zip(ids, rows[2::2], strict=True) if seen}

    def apply_control(self, verdicts: list[Verdict], rule: ControlRule) -> Steps:
        for _ in range(MAX_ATTEMPTS):
            start, copies, seen = self._read_for_control(verdicts)
            steps = control_steps(verdicts, start, rule, copies, seen)
            applied = [v for v, reason in zip(verdicts, steps.refused, strict=True) if reason is None]
            if not applied:
                return steps
            keys, marks = [self._key("control")], []
            for verdict in applied:
                keys += [self._key("audit-copy", verdict.audit_id), self._key("control-seen", verdict.audit_id)]
                marks.append(verdict.answer)
            written = write_control(steps.state)
            args = [start.control.version, self.seen_ttl_s, *(written[f] for f in CONTROL_FIELDS), *marks]
            if int(self._call(self._control, keys=keys, args=args)[0]) == 1:
                return steps
        raise RedisUnavailable(f"Redis at {self._host}: the live control kept changing under this controller "
                               f"({MAX_ATTEMPTS} attempts); retrying the batch")

    def repair_control(self) -> str | None:
        wrong: list[str] = []

        def check(pipe: redis.client.Pipeline) -> None:
            wrong.clear()  # a lost race runs this again
            try:
                read_control(dict(zip(CONTROL_FIELDS, pipe.hmget(self._key("control"), *CONTROL_FIELDS),
                                      strict=True)))
            except redis.ResponseError as exc:
                wrong.append(f"the stored threshold control is unreadable: {str(exc)[:200]}")
            except BadControl as exc:
                wrong.append(str(exc))
            if wrong:
                pipe.multi()
                pipe.delete(self._key("control"))

        self._call(self.client.transaction, check, self._key("control"))  # WATCHed: a controller's step wins
        return wrong[-1] if wrong else None

    def close(self) -> None:
        self.client.close()
