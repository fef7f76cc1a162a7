"""dimee's fault-injection suite: every role a separate `dimee` process on the real Kafka cluster and Redis,
under the faults a deployment meets. It reports figures and asserts nothing; it exits 0 when it completed,
whatever it found (non-zero only for its own errors).

Scenarios, each on its own topic prefix:
  a  kill storm: a steady stream, two adaptive routers, one worker per tier (two for the busiest), a sink;
     random SIGKILLs of routers and workers spread over the stream, each restarted after a short pause;
  b  hostile input: malformed and hostile records, sent raw with kafka-python, interleaved with valid ones,
     plus corrupt routed messages on a tier topic; each must reach the dead-letter topic with a reason;
  c  outages: Redis stopped mid-stream, then (c-kafka) every Kafka node killed mid-stream, each for
     --outage-s, then started again;
  d  SIGTERM of every role mid-stream (exit codes, expected 0), then all restarted to finish the stream;
  e  broker failover: the leader of PREFIX.edge partition 0 SIGKILLed, started again ~20 s later;
  f  a zombie: the busiest tier's worker SIGSTOPped, a successor with its instance id started, the zombie
     resumed (SIGCONT) while the successor serves: the zombie must stop as fenced, the successor go on;
  g  fast clocks: samples whose produced_at is 2 h ahead (to be answered), in the year 3000 or 1e300 (to be
     dead-lettered), interleaved with the others;
  h  lost centroid state: Redis FLUSHALL mid-stream, then `dimee seed --only-missing` 15 s later;
  i  `dimee produce` through an outage of every Kafka node longer than its 30 s flush timeout, at 4/s
     (i-4) and at 40/s (i-40);
  j  a router SIGKILLed mid-stream and restarted with its instance id, then again with a new one: how long
     read_committed readers wait for the transaction the killed one left open;
  k  forged audits (each answer below the cloud: the other answer for an audited id, its own for another,
     plus made-up ids) on PREFIX.audits during the stream, then every genuine audit replayed, the
     controller on: all refused, the offset the genuine audits alone make;
  l  a second pipeline of the same model on the same Redis (l-2, its router reseeding its own state),
     started while the first (l-1) streams;
  m  the threshold control key damaged mid-stream (a field `nan`, then a string), then
     `dimee seed --only-missing`;
  n  Redis out of memory (maxmemory 1 byte, noeviction) for --outage-s mid-stream, the controller on.

A small supervisor restarts any role that exits without the suite asking it to, and counts it. Per scenario
it measures: produced, delivered unique (a read_committed reader of PREFIX.predictions), lost, duplicates
before dedupe, dead letters by reason, the valid samples among them, the mean cost of the predictions,
malformed records accounted for, the centroid counts in Redis against the ids the adaptive routers routed,
unexpected exits, stalls (a deadline passed with samples unanswered)
and wall time. Needs DIMEE_TEST_KAFKA / DIMEE_TEST_REDIS / DIMEE_TEST_SERVICES_SCRIPT from
deploy/local-services.sh: `make faults` runs it under `deploy/local-services.sh run`.
"""

# The machinery: cluster (the services and the supervisor of role processes), runs (a scenario run: its
# roles, stream and waits), reading (topics, sink file, Redis) and report (figures, table); the scenarios
# (a)-(j) in scenarios, their hostile records in hostile, (k)-(n) in state_faults; `python -m benchmarks.faults`
# runs __main__.
