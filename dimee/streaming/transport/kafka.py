"""Kafka through kafka-python 3.x: current brokers (auto-detect; idempotent producer, transactions for
exactly-once, read_committed consumers) and the legacy 0.9 (pin api_version to (0, 9); at-least-once only).
The envelope lives in the value, so nothing needs record headers or timestamps. What this adapter works
around in kafka-python, and why, is in docs/operations.md ("Why the stage and the Kafka adapter do what they
do")."""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from typing import NamedTuple, cast, overload

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, OffsetAndMetadata, TopicPartition
from kafka import errors as kafka_errors
from kafka.admin import NewTopic
from kafka.consumer.subscription_state import ConsumerRebalanceListener
from kafka.errors import KafkaConfigurationError, KafkaError, TopicAlreadyExistsError
from kafka.producer.transaction_manager import InitProducerIdHandler, ProducerIdAndEpoch, TransactionState
from kafka.structs import MemberState

from dimee.common.errors import DeliveryError, DimeeError, Fenced, Rebalanced, Refused, ServiceUnavailable, Unanswered
from dimee.streaming.transport.base import Consumer, ConsumerGuard, Headers, Record, TransactionalProducer

# The broker says another producer with this transactional id is newer: this instance is a zombie.
FENCED_ERRORS = (kafka_errors.ProducerFencedError, kafka_errors.InvalidProducerEpochError)
# The group moved on before the commit (KIP-447 fencing by group generation): abort, re-read from committed.
REBALANCE_ERRORS = (kafka_errors.CommitFailedError, kafka_errors.IllegalGenerationError,
                    kafka_errors.UnknownMemberIdError, kafka_errors.RebalanceInProgressError,
                    kafka_errors.FencedInstanceIdError)


REQUEST_TIMEOUT_MS = 15000
DELIVERY_TIMEOUT_MS = 120_000  # how long the client holds an unacknowledged send before failing it
TRANSACTION_REQUEST_TIMEOUT_S = 20.0
# The coordinator aborts a transaction left open this long. Longer than the longest a live transaction runs
# (its sends' request timeout, then the offset commit and the commit, each given up after
# TRANSACTION_REQUEST_TIMEOUT_S), so a live one is never aborted under it; and the longest a killed instance
# that is not restarted blocks read_committed readers of its partitions (one restarted with the same instance
# id ends it at once: its init fences the old epoch).
TRANSACTION_TIMEOUT_MS = REQUEST_TIMEOUT_MS + int(2 * TRANSACTION_REQUEST_TIMEOUT_S * 1000) + 5000


def _fenced(producer: KafkaProducer, exc: KafkaError) -> bool:
    """Whether a failed transactional call means this producer may no longer use its transactional id. Once
    fenced while its records were in flight, kafka-python answers every later call with a generic "error state"
    KafkaError; the fencing is the transaction manager's last error. A manager in its fatal state, or bumping
    its epoch, is read as fenced too: either way the cause is not known to be an outage, and re-initialising
    the id could fence a newer instance."""
    if isinstance(exc, FENCED_ERRORS):
        return True
    manager = getattr(producer, "_transaction_manager", None)
    if manager is None:
        return False
    cause = manager.last_error
    if isinstance(cause, FENCED_ERRORS) or (isinstance(cause, type) and issubclass(cause, FENCED_ERRORS)):
        return True
    return manager.has_fatal_error() or manager.is_bumping_epoch()


def _strict_transactions(producer: KafkaProducer) -> None:
    """Close two gaps of kafka-python's transactional producer as the Java client does: a stale epoch is
    fatal (fenced), never an epoch bump or a fresh id; a batch given up on makes the transaction abortable."""
    manager = producer._transaction_manager
    classify = manager.classify_batch_error

    def classify_strictly(error: object, batch: object, log_start_offset: int = -1) -> str:
        kind = error if isinstance(error, type) else type(error)
        if issubclass(kind, FENCED_ERRORS):  # type: ignore[arg-type]
            return manager.ERROR_CLASS_FATAL
        outcome = classify(error, batch, log_start_offset=log_start_offset)
        return manager.ERROR_CLASS_ABORTABLE if outcome == manager.ERROR_CLASS_RETRIABLE else outcome

    def fenced_instead_of_a_fresh_id(transaction_timeout_ms: int, result: object) -> None:
        fenced = kafka_errors.ProducerFencedError()
        manager._transition_to(TransactionState.FATAL_ERROR, error=fenced)
        result.done(error=fenced)  # type: ignore[attr-defined]

    manager.classify_batch_error = classify_strictly
    manager._restart_epoch_bump_without_producer_id = fenced_instead_of_a_fresh_id


def _take_over(producer: KafkaProducer, predecessor: ProducerIdAndEpoch, timeout_ms: int) -> None:
    """init_transactions for a producer replacing `predecessor` (same transactional id) in the same instance:
    an InitProducerId that names the predecessor's producer id and epoch (KIP-360). The coordinator bumps the
    epoch, completing or aborting what the predecessor left open, only if that epoch is still the newest, and
    answers PRODUCER_FENCED if a newer instance has initialised the id since: a replacement never fences a
    newer instance, whatever made its predecessor fail."""
    manager = producer._transaction_manager
    with manager._lock:
        manager._transition_to(TransactionState.INITIALIZING)
        manager.set_producer_id_and_epoch(predecessor)
        handler = InitProducerIdHandler(manager, manager.transaction_timeout_ms, is_epoch_bump=True)
        manager._enqueue_request(handler)
    producer._init_transactions_result = handler.result
    producer._sender.wakeup()
    if not handler.result.wait(timeout_ms=timeout_ms):
        raise kafka_errors.KafkaTimeoutError(f"the transactional id was not taken over in {timeout_ms} ms")


def _within(seconds: float, action: Callable[[], None], what: str) -> None:
    """Run a transactional request, giving up after `seconds` (kafka-python waits without a limit, for ever
    if the coordinator's broker died): the caller then replaces the producer, which finds the new one, or waits
    longer for the answer through the Unanswered it raised (the request stays in flight: a commit may yet take
    effect, and kafka-python retries it on the coordinator a restarted broker or a new leader gives)."""
    outcome: list[BaseException | None] = []

    def run() -> None:
        try:
            action()
            outcome.append(None)
        except BaseException as exc:  # handed to the caller's thread below
            outcome.append(exc)

    thread = threading.Thread(target=run, name=f"kafka-{what}", daemon=True)
    thread.start()
    started = time.monotonic()

    def answer(wait_s: float, first: bool) -> None:
        thread.join(wait_s)
        if not outcome:
            raise Unanswered(f"Kafka did not answer the transaction's {what} in {time.monotonic() - started:.0f} s",
                             lambda more_s: answer(more_s, first=False))
        error = outcome[0]
        if error is None:
            return
        if first:  # the caller's own handling sorts kafka-python's errors
            raise error
        raise DeliveryError(f"Kafka answered the transaction's {what} late, with an error: {error}") from error

    answer(seconds, first=True)


def _unreachable(servers: str, exc: Exception) -> DimeeError:
    """Why a client could not be built: a refused login or a missing permission is the user's to fix (a
    DimeeError, the role exits with one line); anything else is an outage to wait out (ServiceUnavailable)."""
    refused = (kafka_errors.SaslAuthenticationFailedError, kafka_errors.UnsupportedSaslMechanismError,
               kafka_errors.IllegalSaslStateError, kafka_errors.AuthorizationError)
    if isinstance(exc, refused):
        return DimeeError(f"Kafka at {servers} refuses this client ({exc}): an authentication or configuration "
                          "error, not an outage (check DIMEE_KAFKA_SECURITY_PROTOCOL, DIMEE_KAFKA_SASL_* and "
                          "the broker's ACLs)")
    return ServiceUnavailable(f"cannot reach Kafka at {servers} ({type(exc).__name__}: {exc}); is the broker running?")


class KafkaTransport:
    def __init__(self, servers: str, api_version: tuple[int, ...] | None = None, client_id: str = "dimee",
                 security: dict | None = None) -> None:
        """`security`: kafka-python's TLS and SASL options (security_protocol, sasl_mechanism, …), given to
        every client."""
        from dimee.streaming.config import kafka_servers

        self.servers = servers
        self.bootstrap = kafka_servers(servers)  # a malformed server is a DimeeError here, not an outage later
        self.api_version = api_version
        self.client_id = client_id
        self.security = security or {}
        # Transactions (and the idempotent producer) need brokers from 0.11 on; auto-detect means current.
        self.supports_transactions = api_version is None or api_version >= (0, 11)

    def _reachable(self, timeout_s: float = 3.0) -> list[str]:
        """The bootstrap servers to hand kafka-python: those that first complete a connection made as its
        clients make theirs (TCP, TLS, an ApiVersions round trip), all tried at once; with SASL, the login is
        then tried on one. ServiceUnavailable at once if none answers, DimeeError if one refuses the login.
        kafka-python bootstraps from one random server, which a hung broker still answers at the TCP level; and
        the probe runs on this thread, leaving no network thread behind after a failed bootstrap."""
        from kafka.net.manager import KafkaConnectionManager
        from kafka.net.selector import NetworkSelector

        def handshakes(servers: list[str], security: dict) -> dict[str, str | None]:
            """Every server at once: None for those ready when the first is, else why not (so far)."""
            options = {"client_id": self.client_id, "api_version": self.api_version, **security}
            net = NetworkSelector(**options)
            manager = KafkaConnectionManager(net, bootstrap_servers=servers, **options)
            # Each connection's own timeout is twice ours: a silent server reads "no answer in 3 s".
            conns = {(f"[{b.host}]" if ":" in b.host else b.host) + f":{b.port}": manager.get_connection(
                b.node_id, timeout_ms=timeout_s * 2000, pop_on_close=False, refresh_metadata_on_err=False)
                for b in manager.cluster.bootstrap_brokers()}
            futures, deadline = [conn.init_future for conn in conns.values()], time.monotonic() + timeout_s
            try:
                while (time.monotonic() < deadline and not any(f.succeeded() for f in futures)
                       and not all(f.is_done for f in futures)):
                    net.poll(timeout_ms=max(0.0, deadline - time.monotonic()) * 1000)
                return {address: None if conn.init_future.succeeded() else
                        str(conn.init_future.exception or f"no answer in {timeout_s:.0f} s")
                        for address, conn in conns.items()}
            finally:
                manager.close()
                net.close()

        plain = {key: value for key, value in self.security.items() if not key.startswith("sasl_")}
        plain["security_protocol"] = self.security.get("security_protocol", "PLAINTEXT").removeprefix("SASL_")
        answers = handshakes(self.bootstrap, plain)  # a SASL listener answers ApiVersions before the login
        live = [address for address, why in answers.items() if why is None]
        if not live:
            reasons = "; ".join(f"{address}: {why}" for address, why in answers.items())
            raise ServiceUnavailable(f"cannot reach Kafka at {self.servers} ({reasons}); is the broker running?")
        mechanism, user = self.security.get("sasl_mechanism"), self.security.get("sasl_plain_username")
        # (A broker that died in the milliseconds since it answered would be misread as a refusal.)
        why = handshakes(live[:1], self.security)[live[0]] if mechanism else None
        if why is not None:
            raise DimeeError(f"Kafka at {live[0]} answers but refuses the SASL login ({mechanism} as {user!r}: "
                             f"{why}): an authentication or configuration error, not an outage (check "
                             "DIMEE_KAFKA_SASL_MECHANISM, _USERNAME, _PASSWORD and the listener's security protocol)")
        return live

    def _common(self) -> dict:
        # kafka-python logs each failed probe connection as an error: this thread's records stay out of the log.
        me = threading.get_ident()
        names = [name for name in list(logging.root.manager.loggerDict) if name.startswith("kafka")]
        others = lambda record: record.thread != me  # noqa: E731 - a filter, added and removed by identity
        for name in names:
            logging.getLogger(name).addFilter(others)
        try:
            servers = self._reachable()
        finally:
            for name in names:
                logging.getLogger(name).removeFilter(others)
        # An unreachable broker is reported (and retried) after 8 s rather than kafka-python's 30 s.
        options: dict = {"bootstrap_servers": servers, "client_id": self.client_id,
                         "bootstrap_timeout_ms": 8000, **self.security}
        if self.api_version is not None:
            options["api_version"] = self.api_version
        return options

    @overload
    def producer(self, transactional_id: None = None, replacing: None = None) -> KafkaProducerAdapter: ...

    @overload
    def producer(self, transactional_id: str, replacing: TransactionalProducer | None = None
                 ) -> KafkaTransactionalProducer: ...

    def producer(self, transactional_id: str | None = None,
                 replacing: TransactionalProducer | None = None) -> KafkaProducerAdapter:
        """acks=all; idempotent where the broker has it; with a transactional id, a transactional producer
        whose init fences any earlier producer with the same id, or, `replacing` one of this instance's own
        (closed after a failure), takes over from it only if no newer instance has the id (else Fenced)."""
        options: dict = {"enable_idempotence": True} if self.supports_transactions else {}
        # Retried until the delivery timeout (the idempotent producer's retries never duplicate): a send held
        # through a shorter outage is delivered once, never failed and sent again as a duplicate.
        options |= {"delivery_timeout_ms": DELIVERY_TIMEOUT_MS, "retry_backoff_ms": 200}
        if transactional_id is not None:
            if not self.supports_transactions:
                raise DimeeError("exactly-once needs Kafka 0.11 or newer: use --guarantee at-least-once")
            # "Concurrent transactions" (the previous one's markers still being written) is retried after
            # retry_backoff_ms: 20 ms as in the Java client (200 ms slowed every commit); 100 retries, same span.
            options |= {"transactional_id": transactional_id, "retries": 100, "retry_backoff_ms": 20,
                        "transaction_timeout_ms": TRANSACTION_TIMEOUT_MS}
        predecessor = replacing.producer_id_and_epoch() if isinstance(replacing, KafkaTransactionalProducer) else None
        try:
            producer = KafkaProducer(acks="all", linger_ms=5, request_timeout_ms=REQUEST_TIMEOUT_MS,
                                     max_in_flight_requests_per_connection=1, **options, **self._common())
            if transactional_id is None:
                return KafkaProducerAdapter(producer, envelope=self.supports_transactions)
            _strict_transactions(producer)
            try:
                if predecessor is None:
                    producer.init_transactions()
                else:
                    _take_over(producer, predecessor, producer.config["max_block_ms"])
            except BaseException:
                producer.close(timeout=0)  # its network thread would outlive every retry otherwise
                raise
            return KafkaTransactionalProducer(producer)
        except FENCED_ERRORS as exc:
            raise Fenced(f"fenced by a newer instance with the transactional id {transactional_id!r} "
                         f"({type(exc).__name__})") from exc
        except KafkaConfigurationError as exc:
            raise DimeeError(f"Kafka producer configuration rejected: {exc}") from exc
        except KafkaError as exc:
            raise _unreachable(self.servers, exc) from exc

    def consumer(self, topics: list[str], group_id: str, max_poll_interval_s: float = 300.0,
                 read_committed: bool = False) -> KafkaConsumerAdapter:
        session_ms, poll_interval_ms = 10000, int(max_poll_interval_s * 1000)
        if self.api_version is not None and self.api_version < (0, 10, 1):
            # Before 0.10.1 the session timeout also bounds the time between polls; the two must be equal.
            # Stages poll every batch (well under 10 s), and a killed member is noticed within 10 s.
            poll_interval_ms = session_ms
        try:
            consumer = KafkaConsumer(
                group_id=group_id, enable_auto_commit=False, auto_offset_reset="earliest",
                session_timeout_ms=session_ms, heartbeat_interval_ms=2000, max_poll_interval_ms=poll_interval_ms,
                isolation_level="read_committed" if read_committed else "read_uncommitted", **self._common(),
            )
        except KafkaConfigurationError as exc:  # not transient: retrying cannot help
            raise DimeeError(f"Kafka consumer configuration rejected: {exc}") from exc
        except KafkaError as exc:
            raise _unreachable(self.servers, exc) from exc
        adapter = KafkaConsumerAdapter(consumer)
        consumer.subscribe(topics, listener=adapter)  # told of every rebalance, inside poll
        return adapter

    def ensure_topics(self, topics: list[str], partitions: int = 3, replication: int | None = None) -> None:
        """Create topics through the admin API where the broker has it (0.10.1+); on older brokers ask for
        their metadata, which auto-creates them with the broker's num.partitions. `replication` defaults to
        min(3, brokers in the cluster metadata): a cluster cannot hold more replicas than brokers, and with
        min.insync.replicas=2 a single-replica topic would refuse every acks=all write."""
        if self.api_version is None or self.api_version >= (0, 10, 1):
            try:
                admin = KafkaAdminClient(**self._common())
            except KafkaError as exc:
                raise _unreachable(self.servers, exc) from exc
            try:
                existing = set(admin.list_topics())
                missing = [t for t in topics if t not in existing]
                if missing:
                    if replication is None:
                        replication = max(1, min(3, len(admin.describe_cluster()["brokers"])))
                    admin.create_topics([NewTopic(t, partitions, replication) for t in missing])
                return
            except TopicAlreadyExistsError:
                return
            except KafkaError:
                pass  # fall through to auto-create
            finally:
                admin.close()
        producer = self.producer()
        try:
            for topic in topics:
                producer.producer.partitions_for(topic)
        except KafkaError as exc:  # a broker slow to create a topic (seen: 60 s on a loaded 0.9): waited out
            raise ServiceUnavailable(f"Kafka at {self.servers} did not create {topic} ({type(exc).__name__}: "
                                     f"{exc})") from exc
        finally:
            producer.close()

    def close(self) -> None:
        pass


class KafkaProducerAdapter:
    def __init__(self, producer: KafkaProducer, envelope: bool = True) -> None:
        self.producer = producer
        self.envelope = envelope  # record timestamps and headers: Kafka 0.11+
        self._pending: list = []

    def send(self, topic: str, key: bytes | None, value: bytes, timestamp_s: float | None = None,
             headers: Headers = ()) -> None:
        extra: dict = {}
        if self.envelope:
            extra = {"headers": list(headers) or None,
                     "timestamp_ms": None if timestamp_s is None else int(timestamp_s * 1000)}
        try:
            self._pending.append(self.producer.send(topic, key=key, value=value, **extra))
        except KafkaError as exc:
            if not exc.retriable:  # e.g. larger than the producer's max_request_size
                raise Refused(f"{type(exc).__name__}: {exc}") from exc
            raise DeliveryError(f"Kafka refused a send: {exc}") from exc  # e.g. no metadata: an outage

    def acknowledged(self) -> bool:
        return all(future.is_done for future in self._pending)

    def expect(self, topics: list[str]) -> None:
        # kafka-python asks for a topic's metadata at its first send and waits for the answer: ~100 ms a topic, one
        # after another, in a stage's first batch (0.8 s of a router's first 3,000 records). Its network thread asks
        # for all of these in one request instead, while the stage joins its group.
        for topic in topics:
            self.producer._sender.add_topic(topic)

    def flush(self, timeout_s: float | None = 30.0) -> None:
        """Wait for every send since the last flush; raise DeliveryError naming each that failed, and each
        the client still holds (a flush that timed out during an outage): those stay pending, for the next
        flush to wait for again — kafka-python may still deliver them, so sending them again would duplicate."""
        pending = self._pending
        with contextlib.suppress(KafkaError):  # timed out: what is still held is sorted out below
            self.producer.flush(timeout=timeout_s)
        self._pending = [f for f in pending if not f.is_done]
        failed = [(i, f.exception) for i, f in enumerate(pending) if f.is_done and f.failed()]
        held = [i for i, f in enumerate(pending) if not f.is_done]
        if failed or held:
            first = failed[0][1] if failed else "still held by the client (the broker has not answered)"
            raise DeliveryError(f"Kafka did not acknowledge {len(failed) + len(held)} send(s): {first}", failed, held)

    def close(self) -> None:
        # Whatever is still unsent was never acknowledged, so nothing was committed past it: a producer that
        # cannot flush on close (a broker outage, a stuck transaction being replaced) is simply dropped.
        with contextlib.suppress(KafkaError):
            self.producer.close(timeout=10)


class KafkaTransactionalProducer(KafkaProducerAdapter):
    """Consume-transform-produce in one transaction: the batch's outputs and the consumer's positions."""

    def producer_id_and_epoch(self) -> ProducerIdAndEpoch | None:
        """The id and epoch a replacement takes over from (None: never initialised, so nothing to take over)."""
        current = self.producer._transaction_manager.producer_id_and_epoch
        return current if current.is_valid else None

    def begin(self) -> None:
        self._pending = []
        _forget_refused_offsets(self.producer)
        try:
            self.producer.begin_transaction()
        except KafkaError as exc:
            if _fenced(self.producer, exc):
                raise Fenced(f"fenced by a newer instance with the same transactional id ({exc})") from exc
            raise DeliveryError(f"Kafka did not begin the transaction: {exc}") from exc

    def commit(self, consumer: Consumer | None, mark: object | None = None) -> None:
        try:
            # a KafkaConsumerAdapter's mark, asked of the consumer if none is given; neither: the sends alone
            kafka_mark = cast(KafkaMark | None, mark or (None if consumer is None else consumer.mark()))
        except Rebalanced:
            self.abort()
            raise
        try:
            if kafka_mark is not None:
                offsets, group = kafka_mark
                _within(TRANSACTION_REQUEST_TIMEOUT_S,
                        lambda: self.producer.send_offsets_to_transaction(offsets, group), "offset commit")
            _within(TRANSACTION_REQUEST_TIMEOUT_S, self.producer.commit_transaction, "commit")
        except FENCED_ERRORS as exc:
            raise Fenced(f"fenced by a newer instance with the same transactional id ({type(exc).__name__})") from exc
        except REBALANCE_ERRORS as exc:
            self.abort()
            raise Rebalanced(f"the group rebalanced before the commit ({type(exc).__name__})") from exc
        except KafkaError as exc:
            if _fenced(self.producer, exc):  # never replaced and retried: that would fence the newer instance
                raise Fenced(f"fenced by a newer instance with the same transactional id ({exc})") from exc
            self.abort()
            raise DeliveryError(f"Kafka did not commit the transaction: {exc}") from exc
        finally:
            self._pending = []

    def abort(self) -> None:
        try:
            _within(TRANSACTION_REQUEST_TIMEOUT_S, self.producer.abort_transaction, "abort")
        except FENCED_ERRORS as exc:
            raise Fenced(f"fenced by a newer instance with the same transactional id ({type(exc).__name__})") from exc
        except (KafkaError, DeliveryError):
            pass  # nothing to abort, or the broker aborts it on timeout: either way nothing was committed


def _forget_refused_offsets(producer: KafkaProducer) -> None:
    """kafka-python (3.0.12) keeps the offsets of a transactional offset commit that the broker refused (a stale
    generation: CommitFailedError) and sends them again with the next transaction's offsets, under the new
    generation, which the broker accepts. A partition that is another member's by then is committed back (its
    owner's records are read again: duplicates) or past what its owner has read (lost). So a transaction starts
    without them: its offsets are exactly the ones its mark carries."""
    manager = getattr(producer, "_transaction_manager", None)
    refused = getattr(manager, "_pending_txn_offset_commits", None)
    if refused:
        with manager._lock:  # type: ignore[union-attr]
            refused.clear()


def _fenceable(group: object | None) -> bool:
    """Whether a transaction's offsets carrying this group membership are fenced by the broker. kafka-python's
    heartbeat thread resets a member it finds out of the group to generation -1 and no member id, at any moment;
    the broker validates a transactional offset commit only when it names a generation or a member, so one
    without either commits whatever the group's generation, beside the partitions' new owners (a zombie)."""
    generation = getattr(group, "generation_id", None)
    return generation is None or (generation >= 0 and bool(getattr(group, "member_id", "")))


class KafkaMark(NamedTuple):
    offsets: dict  # TopicPartition → OffsetAndMetadata: the offsets to commit (a stage's: where its records end)
    group: object  # the group metadata (generation, member id): a transaction's offsets are fenced by it


class KafkaConsumerAdapter(ConsumerGuard, ConsumerRebalanceListener):
    """Positions are kept here, from what poll returned, never asked of kafka-python's `position()`, which may
    block on round trips (the stage marks positions after every batch). Polls are marked for the guard.

    After a rebalance (inside poll: kafka-python calls the listener methods below) every assigned partition starts
    again from its committed offset, as with the Java client's eager protocol. kafka-python keeps the fetch position
    of a partition a member keeps, so the adapter seeks it back itself and drops what that poll returned: the
    records between the committed offset and the kept position were polled for batches that the rebalance is about
    to abort or drop, and reading on from the kept position would commit past them unprocessed (the kill storm's
    lost samples). Records polled before a rebalance are never marked: their partitions may be another member's now,
    and their positions are gone, so their transaction would carry no offsets, which the broker does not fence by
    the group generation. A mark also carries the generation its records were polled in, so a batch marked before a
    rebalance and committed after it is refused (KIP-447)."""

    def __init__(self, consumer: KafkaConsumer) -> None:
        self.consumer = consumer
        self.next_offsets: dict[TopicPartition, int] = {}
        self.polled_in: object | None = None  # the group metadata of the first poll with records since the last mark
        self.rebalances = 0  # the listener's calls so far: a revocation or an assignment
        self.polled_at: int | None = None  # `rebalances` at the first poll with records since the last mark
        self.unsettled = False  # a rebalance since the assigned partitions were last sought to their committed offsets

    # The listener runs on kafka-python's network thread (while the stage's thread waits in poll), where a blocking
    # call is refused: the seek to the committed offsets happens in poll, once the rebalance is over.
    def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        self.rebalances += 1
        self.unsettled = True
        for tp in revoked:
            self.next_offsets.pop(tp, None)

    def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        self.rebalances += 1
        self.unsettled = True
        for tp in assigned:  # read again from the committed offset, whoever read it before
            self.next_offsets.pop(tp, None)

    def _group_metadata(self) -> object | None:
        metadata = getattr(self.consumer, "group_metadata", None)  # for transactions: Kafka 0.11+ clients
        return metadata() if metadata is not None else None

    def positions(self) -> dict:
        """The next offset of every assigned partition read from so far: what a commit now would record."""
        assigned = self.consumer.assignment()
        return {tp: OffsetAndMetadata(offset, "", -1) for tp, offset in self.next_offsets.items() if tp in assigned}

    def joined(self) -> bool:
        """Whether the consumer is a settled member of its group (joined, heartbeating)."""
        return self.consumer.group_metadata().state == MemberState.STABLE

    def mark(self, carried: dict[tuple[str, int], int] | None = None) -> KafkaMark:
        polled_in, polled_at = self.polled_in, self.polled_at
        self.polled_in = self.polled_at = None
        if polled_at is not None and polled_at != self.rebalances:
            raise Rebalanced("the group rebalanced after these records were polled; they are read again")
        group = polled_in or self._group_metadata()
        if not _fenceable(group):
            raise Rebalanced("these records were polled while this member was out of its group; they are read again")
        positions = self.positions()
        if carried is None:
            return KafkaMark(positions, group)
        standing = {(tp.topic, tp.partition): meta.offset for tp, meta in positions.items()}
        astray = {f"{topic}[{partition}]": (offset, standing.get((topic, partition)))
                  for (topic, partition), offset in carried.items() if standing.get((topic, partition)) != offset}
        if astray:
            raise Rebalanced(f"the consumer does not stand where these records end (offset after them, position: "
                             f"{astray}); they are read again")
        return KafkaMark({TopicPartition(topic, partition): OffsetAndMetadata(offset, "", -1)
                          for (topic, partition), offset in carried.items()}, group)

    def rewind(self) -> dict[tuple[str, int], int]:
        """Back to the committed offsets (after an aborted transaction), so the batch is read again."""
        committed = self._seek_committed()
        self.polled_in = self.polled_at = None  # what was polled since the last mark is read again
        return committed

    def _seek_committed(self) -> dict[tuple[str, int], int]:
        """Every assigned partition to its committed offset, as the group coordinator has it now. kafka-python
        answers `committed()` from an earlier request for the same partitions while one is cached (a poll that timed
        out leaves it there), which may predate the commits since: read again, those would be duplicates."""
        assigned = self.consumer.assignment()
        try:
            coordinator = self.consumer._coordinator
            coordinator._offset_fetch_futures.clear()
            committed = coordinator.fetch_committed_offsets(assigned, timeout_ms=REQUEST_TIMEOUT_MS) if assigned else {}
            for tp in assigned:
                if tp in committed:
                    self.consumer.seek(tp, committed[tp].offset)
                else:  # nothing committed yet: from the start, as auto_offset_reset says
                    self.consumer.seek_to_beginning(tp)
                self.next_offsets.pop(tp, None)
        except KafkaError as exc:
            raise ServiceUnavailable(f"cannot read the committed offsets ({type(exc).__name__}: {exc})") from exc
        self.unsettled = False
        return {(tp.topic, tp.partition): meta.offset for tp, meta in committed.items() if tp in assigned}

    def poll(self, max_records: int, timeout_s: float) -> list[Record]:
        if self.unsettled:  # a rebalance whose seek failed (an outage): before anything is read
            self._seek_committed()
        try:
            with self.polling():
                batches = self.consumer.poll(timeout_ms=int(timeout_s * 1000), max_records=max_records)
        except KafkaError as exc:  # every broker down: an outage to wait out, not a reason to exit
            raise ServiceUnavailable(f"cannot poll Kafka ({type(exc).__name__}: {exc})") from exc
        if self.unsettled:  # a rebalance inside this poll: what it returned may come from a kept position
            self._seek_committed()
            return []
        if self.polled_at is None and any(batches.values()):
            self.polled_in, self.polled_at = self._group_metadata(), self.rebalances
        for tp, records in batches.items():
            if records:
                self.next_offsets[tp] = records[-1].offset + 1
        return [Record(r.topic, r.partition, r.offset, r.key, r.value)
                for tp in sorted(batches, key=lambda tp: (tp.topic, tp.partition)) for r in batches[tp]]

    def lag(self) -> dict[tuple[str, int], int]:
        """Behind the last fetch's high watermark, from the partitions read from so far (no request). Measured from
        the fetch position, which passes the commit markers and aborted batches after the last record returned:
        caught up reads 0, not 1 per transaction marker (an alert on lag > 0 would never clear)."""
        out, assigned = {}, self.consumer.assignment()
        for tp, offset in self.next_offsets.items():
            end = self.consumer.highwater(tp) if tp in assigned else None  # the last fetch's: no request
            if end is not None:
                out[(tp.topic, tp.partition)] = max(0, end - max(offset, self._fetch_position(tp)))
        return out

    def _fetch_position(self, tp: TopicPartition) -> int:
        # kafka-python's position() may fetch committed offsets for other partitions first: read the state instead
        state = self.consumer._subscription.assignment.get(tp)
        position = state.position if state is not None else None
        return position.offset if position is not None else 0

    def commit(self, mark: object | None = None) -> None:
        """Commit what poll returned (or the positions of `mark`). A group that rebalanced meanwhile refuses
        (the partitions may be another member's now): rewind to the committed offsets and say so, for the
        caller to drop the batch."""
        try:
            if mark is None:
                self.consumer.commit()
            else:
                self.consumer.commit(offsets=cast(KafkaMark, mark).offsets)
        except REBALANCE_ERRORS as exc:
            self.rewind()
            raise Rebalanced(f"the group rebalanced before the commit ({type(exc).__name__})") from exc
        except KafkaError as exc:
            raise ServiceUnavailable(f"Kafka did not take the commit ({type(exc).__name__}: {exc})") from exc

    def close(self) -> None:
        self.released = True
        if self.given_up:  # a client out of its group for good may hang in close too
            threading.Thread(target=self.consumer.close, kwargs={"autocommit": False},
                             name=f"{self.owner}-close-lost", daemon=True).start()
        else:
            self.consumer.close(autocommit=False)
