"""Centroids in Redis. Keys, under the namespace `dimee:{MODEL_ID}` (the braces are a cluster hash tag, so
one script touches one slot):

    dimee:{MODEL_ID}:meta         hash: pools, dim, seeded_at
    dimee:{MODEL_ID}:pool:K       hash: mean (packed little-endian float64; absent for an empty pool),
                                        count, version
    dimee:{MODEL_ID}:seen:ID      "1" with a TTL: this sample id has moved a centroid already

The adaptive update is one Lua script: it sets the seen-marker (NX) and moves the mean in the same atomic
step, so a replayed message never moves a centroid twice and concurrent routers never lose an update.
"""

from __future__ import annotations

import time

import numpy as np
import redis

from dimee.config import redact
from dimee.errors import DimeeError, ServiceUnavailable
from state.base import CentroidSnapshot, NotSeeded, Update

UPDATE_SCRIPT = """
if not redis.call('SET', KEYS[2], '1', 'NX', 'EX', tonumber(ARGV[2])) then
  return {0, 0}
end
local mean = redis.call('HGET', KEYS[1], 'mean')
if not mean then
  redis.call('DEL', KEYS[2])
  return {-1, 0}
end
local n = tonumber(redis.call('HGET', KEYS[1], 'count'))
local e = ARGV[1]
local gamma = tonumber(ARGV[3])
local out = {}
for i = 0, string.len(mean) / 8 - 1 do
  local mu = struct.unpack('<d', mean, i * 8 + 1)
  local x = struct.unpack('<d', e, i * 8 + 1)
  if gamma > 0 then
    out[i + 1] = struct.pack('<d', mu + (x - mu) * gamma)
  else
    out[i + 1] = struct.pack('<d', mu + (x - mu) / (n + 1))
  end
end
redis.call('HSET', KEYS[1], 'mean', table.concat(out), 'count', n + 1)
return {1, redis.call('HINCRBY', KEYS[1], 'version', 1)}
"""


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
        self._update = self.client.register_script(UPDATE_SCRIPT)

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
            for key in self.client.scan_iter(match=self._key("seen", "*"), count=1000):
                pipe.delete(key)
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

    def is_seeded(self) -> bool:
        return bool(self._call(self.client.exists, self._key("meta")))

    def snapshot(self) -> CentroidSnapshot:
        pools = self._call(self.client.hget, self._key("meta"), "pools")
        if pools is None:
            raise NotSeeded(f"no centroids in Redis under {self.namespace}: start a router with --reseed "
                            "to seed them from calibration.json")
        with self.client.pipeline(transaction=True) as pipe:
            for pool in range(int(pools)):
                pipe.hmget(self._key("pool", pool), "mean", "count", "version")
            rows = self._call(pipe.execute)
        means = [None if mean is None else unpack(mean) for mean, _, _ in rows]
        return CentroidSnapshot(means, [int(c or 0) for _, c, _ in rows], [int(v or 0) for _, _, v in rows])

    def apply(self, updates: list[Update]) -> list[bool]:
        if not updates:
            return []
        with self.client.pipeline(transaction=False) as pipe:
            for update in updates:
                self._update(keys=[self._key("pool", update.pool), self._key("seen", update.sample_id)],
                             args=[pack(update.embedding), self.seen_ttl_s, repr(float(update.gamma))], client=pipe)
            results = self._call(pipe.execute)
        return [int(result[0]) == 1 for result in results]

    def close(self) -> None:
        self.client.close()
