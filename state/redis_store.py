"""Centroids in Redis. Keys, under the namespace `dimee:{MODEL_ID}` (the braces are a cluster hash tag, so
one script touches one slot):

    dimee:{MODEL_ID}:meta         hash: pools, dim, seeded_at
    dimee:{MODEL_ID}:pool:K       hash: mean (packed little-endian float64; absent for an empty pool),
                                        count, version
    dimee:{MODEL_ID}:seen:ID      "1" with a TTL: this sample id has moved a centroid already
    dimee:{MODEL_ID}:control      hash: offset (the live threshold offset, a float's repr), version
    dimee:{MODEL_ID}:control-seen:ID  "1" with a TTL: this audit has moved the offset already

A batch of adaptive updates is two round trips, whatever its size: read the centroids, compute the moves
(`state.base.moves`, the same code as the in-memory store), then one Lua script that writes them only if
no pool it moves changed meanwhile (its version) and no sample id was seen before — setting the seen-markers
in the same atomic step. Otherwise nothing is written and the batch is computed again: without the seen ids,
or from the centroids as they now are. So a replayed message never moves a centroid twice and concurrent
routers never lose an update (optimistic concurrency; a busy pool costs a retry, not a lock).
"""

from __future__ import annotations

import time

import numpy as np
import redis
from dimee.state.base import RESTORE_HINT, CentroidSnapshot, NotSeeded, Steps, Update, control_steps, moves

from dimee.common.errors import DimeeError, ServiceUnavailable
from dimee.method.control import Control, ControlRule
from dimee.streaming.config import redact

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
# KEYS: the control hash, then the seen-markers of the applied audits. ARGV: the version read, the seen TTL, the new
# offset, the new version. Returns {1} written; {-1} the version moved; {0, i, ...} these audits were seen already.
CONTROL_SCRIPT = """
if tonumber(redis.call('HGET', KEYS[1], 'version') or '0') ~= tonumber(ARGV[1]) then
  return {-1}
end
local seen = {0}
for j = 2, #KEYS do
  if redis.call('EXISTS', KEYS[j]) == 1 then
    seen[#seen + 1] = j - 1
  end
end
if #seen > 1 then
  return seen
end
for j = 2, #KEYS do
  redis.call('SET', KEYS[j], '1', 'EX', tonumber(ARGV[2]))
end
redis.call('HSET', KEYS[1], 'offset', ARGV[3], 'version', ARGV[4])
return {1}
"""
MAX_ATTEMPTS = 50  # each lost race means another router moved the pool: progress is being made


def pack(vector: np.ndarray) -> bytes:
    return np.asarray(vector, dtype="<f8").tobytes()


def unpack(blob: bytes) -> np.ndarray:
    return np.frombuffer(blob, dtype="<f8").copy()


class RedisCentroidStore:
    def __init__(self, url: str, model_id: str, seen_ttl_s: int = 3600) -> None:
        self.url = url
        self.namespace = f"dimee:{{{model_id}}}"
        self.seen_ttl_s = seen_ttl_s
        self.client = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=3)
        self._move = self.client.register_script(MOVE_SCRIPT)
        self._restore = self.client.register_script(RESTORE_SCRIPT)
        self._control = self.client.register_script(CONTROL_SCRIPT)

    def _key(self, *parts: object) -> str:
        return ":".join([self.namespace, *(str(p) for p in parts)])

    def _call(self, fn, *args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            raise ServiceUnavailable(f"cannot reach Redis at {self._host} ({exc.__class__.__name__})") from exc

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
            for pattern in (self._key("seen", "*"), self._key("control-seen", "*")):
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
        with self.client.pipeline(transaction=True) as pipe:
            for pool in range(int(pools)):
                pipe.hmget(self._key("pool", pool), "mean", "count", "version")
            rows = self._call(pipe.execute)
        lost = [pool for pool, (_, _, version) in enumerate(rows) if version is None]  # a seeded pool has one
        if lost:
            raise NotSeeded(f"pools {lost} are missing from Redis at {self._host} under {self.namespace}; "
                            f"{RESTORE_HINT}")
        means = [None if mean is None else unpack(mean) for mean, _, _ in rows]
        return CentroidSnapshot(means, [int(c or 0) for _, c, _ in rows], [int(v or 0) for _, _, v in rows])

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
        raise ServiceUnavailable(f"Redis at {self._host}: the centroids kept changing under this router "
                                 f"({MAX_ATTEMPTS} attempts); retrying the batch")

    def control(self) -> Control:
        offset, version = self._call(self.client.hmget, self._key("control"), "offset", "version")
        return Control(offset=float(offset or 0.0), version=int(version or 0))

    def apply_control(self, outcomes: list[tuple[str, bool]], rule: ControlRule) -> Steps:
        seen: set[str] = set()
        for _ in range(MAX_ATTEMPTS):
            start = self.control()
            steps = control_steps(outcomes, start, rule, seen)
            if steps.last is None:
                return steps
            applied = [i for (i, _), ok in zip(outcomes, steps.applied, strict=True) if ok]
            keys = [self._key("control"), *(self._key("control-seen", i) for i in applied)]
            args = [start.version, self.seen_ttl_s, repr(steps.last.offset), steps.last.version]
            result = self._call(self._control, keys=keys, args=args)
            if int(result[0]) == 1:
                return steps
            seen.update(applied[int(i) - 1] for i in result[1:])
        raise ServiceUnavailable(f"Redis at {self._host}: the live control kept changing under this controller "
                                 f"({MAX_ATTEMPTS} attempts); retrying the batch")

    def close(self) -> None:
        self.client.close()
