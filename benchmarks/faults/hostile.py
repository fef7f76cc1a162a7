"""(b) hostile input: malformed and hostile records, sent raw, and where each one ended."""

from __future__ import annotations

import base64
import json
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from benchmarks.faults.reading import Observed
    from benchmarks.faults.runs import Run


INJECTOR = "faults-injector"  # the router name on messages this suite writes to a tier topic itself


@dataclass(frozen=True)
class Hostile:
    kind: str
    value: bytes | None
    key: str | None
    expect: str = "dead-letter"  # or "answer-or-dead-letter": schema-valid but hostile
    topic: str = "samples"
    answer_id: str | None = None  # the id a prediction would carry
    answers_needed: int = 1  # predictions of answer_id that mean this record was answered


def encode(body: object) -> bytes:
    return json.dumps(body).encode()  # json writes NaN and Infinity as the tokens NaN / Infinity


DROP = object()  # a field left out of a sample


def malformed_samples(prefix: str) -> list[Hostile]:
    """Records that break the sample contract: each must be dead-lettered."""
    def key(kind: str) -> str:
        return f"{prefix}-bad-{kind}"

    def sample(kind: str, **fields) -> Hostile:
        body = {"id": key(kind), "text": "the movie was fun", **fields}
        return Hostile(kind, encode({k: v for k, v in body.items() if v is not DROP}), key(kind))

    return [
        Hostile("bad-json", b'{"id": "x", "text": the movie}', None),
        Hostile("truncated-json", b'{"id": "' + key("truncated-json").encode() + b'", "text": "fun"', None),
        Hostile("not-utf8", b"\xff\xfe\xfa not utf-8", key("not-utf8")),
        Hostile("not-utf8-900kb", bytes([0xFF, 0xFE, 0xC3, 0x28]) * 225_000, key("not-utf8-900kb")),
        Hostile("tombstone (null value)", None, key("tombstone")),
        Hostile("empty payload", b"", key("empty")),
        Hostile("json null", b"null", key("json-null")),
        Hostile("json array", b'[{"id": "a", "text": "fun"}]', key("json-array")),
        Hostile("json number", b"42", key("json-number")),
        Hostile("json string", b'"the movie was fun"', key("json-string")),
        Hostile("utf-8 BOM before JSON", b"\xef\xbb\xbf" + encode({"id": key("bom"), "text": "fun"}), key("bom")),
        Hostile("empty object", b"{}", key("empty-object")),
        sample("missing-id", id=DROP),
        sample("missing-text", text=DROP),
        sample("id-number", id=12345),
        sample("id-empty", id=""),
        Hostile("id-129-chars", encode({"id": "i" * 129, "text": "fun"}), "i" * 129),
        sample("text-number", text=42),
        sample("text-list", text=["the", "movie"]),
        sample("text-blank", text=" \t\n "),
        sample("text-pair-number", text_pair=7),
        sample("label-string", label="positive"),
        sample("label-float", label=0.5),
        sample("produced-at-string", produced_at="yesterday"),
        sample("produced-at-nan", produced_at=float("nan")),
        sample("produced-at-inf", produced_at=float("inf")),
        sample("v-2", v=2),
        sample("extra-field", surprise=True),
        sample("meta-not-object", meta="not an object"),
    ]


def hostile_samples(prefix: str, duplicate_of: dict) -> list[Hostile]:
    """Schema-valid but hostile samples: answered or dead-lettered, never lost, never a crash. (A reused id
    with a different text is a conflict: it must be dead-lettered.)"""
    def sample(kind: str, sample_id: str | None = None, **fields) -> Hostile:
        sample_id = sample_id or f"{prefix}-odd-{kind}"
        body = {"id": sample_id, "text": "the movie was fun", **fields}
        return Hostile(kind, encode(body), sample_id, "answer-or-dead-letter", answer_id=sample_id)

    deep_id = f"{prefix}-odd-meta-deep"
    deep = f'{{"id": "{deep_id}", "text": "fun", "meta": ' + '{"a": ' * 5000 + "1" + "}" * 5000 + "}"
    reused = {"id": duplicate_of["id"], "text": "a different text for a reused id", "label": 1}
    return [
        sample("label-huge-int", label=10**30),
        sample("label-negative", label=-1),
        sample("meta-900kb", meta={"blob": "x" * 900_000}),
        Hostile("meta-nested-5000-deep", deep.encode(), deep_id, "answer-or-dead-letter", answer_id=deep_id),
        sample("id-unicode", sample_id=f"{prefix}-ид-映画-🙂"),
        sample("id-control-chars", sample_id=f"{prefix}-ctl-\x00\x1b[31m\n\t"),
        sample("text-lone-surrogate", text="fun \ud800 movie"),
        sample("text-nul-chars", text="\x00\x00 fun"),
        sample("text-at-limit-10000", text=("fun " * 2500)[:10_000]),
        sample("text-900kb", text="fun " * 225_000),  # cut to DEFAULT_MAX_TEXT_CHARS, as offline: answered
        Hostile("duplicate id, different text", encode(reused), duplicate_of["id"], answer_id=duplicate_of["id"],
                answers_needed=2),
    ]


def hostile_routed(prefix: str) -> list[Hostile]:
    """Routed messages written straight to PREFIX.edge: corrupt escalation state, an unknown tier."""
    def routed(kind: str, expect: str = "dead-letter", **fields) -> Hostile:
        sample_id = f"{prefix}-routed-{kind}"
        body = {"id": sample_id, "text": "the movie was fun", "tier": "edge", "pool": 1,
                "distances": [1.0, 0.5, 2.0], "centroid_version": 0, "router": INJECTOR, **fields}
        return Hostile(kind, encode(body), sample_id, expect, topic="edge", answer_id=sample_id)

    return [
        routed("routed hidden_fp16 of odd length", start_layer=2,
               hidden_fp16=base64.b64encode(b"\x01" * 7).decode()),
        routed("routed hidden_fp16 not base64", start_layer=2, hidden_fp16="%%% not base64 %%%"),
        routed("routed hidden_fp16 wrong width", start_layer=2, hidden_fp16=base64.b64encode(b"\0" * 66).decode()),
        routed("routed unknown tier", tier="fog"),
        routed("routed start_layer>0 without hidden_fp16", "answer-or-dead-letter", start_layer=2),
    ]


@dataclass
class Sent:
    hostile: Hostile
    topic: str
    partition: int | None = None
    offset: int | None = None
    error: str | None = None


def send_raw(producer, topic: str, key: str | None, value: bytes | None) -> tuple[int, int]:
    future = producer.send(topic, key=None if key is None else key.encode("utf-8", "surrogatepass"), value=value)
    meta = future.get(timeout=60)
    return meta.partition, meta.offset


def send_hostile(run: Run, producer, hostile: Hostile) -> Sent:
    topic = f"{run.prefix}.{hostile.topic}"
    try:
        partition, offset = send_raw(producer, topic, hostile.key, hostile.value)
        return Sent(hostile, topic, partition, offset)
    except Exception as exc:  # e.g. the broker refused it: not counted as sent
        return Sent(hostile, topic, error=f"{exc.__class__.__name__}: {exc}"[:200])


def send_valid(run: Run, producer, record: dict) -> None:
    send_raw(producer, f"{run.prefix}.samples", record["id"], encode({**record, "produced_at": time.time()}))


def outcome_of(item: Sent, letter: dict | None, answered: bool, committed: dict) -> str:
    if item.error:
        return "refused at send: " + item.error
    if letter:
        return f"dead-lettered by {letter.get('stage')}: {str(letter.get('error', ''))[:120]}"
    if answered:
        return "answered (a prediction)"
    position = committed.get((item.topic, item.partition))
    if position is not None and item.offset is not None and item.offset >= position:
        return (f"never processed: its group's committed offset on {item.topic}/{item.partition} stayed at "
                f"{position}, before this record's {item.offset} (the stage is stuck or crash-looping)")
    return "missing: processed past, but neither dead-lettered nor answered"


def hostile_outcomes(sent: list[Sent], observed: Observed, committed: dict) -> list[dict]:
    """Where each hostile record ended: dead-lettered (matched by topic/partition/offset, else key), answered,
    or nowhere."""
    by_offset = {(d.get("topic"), d.get("partition"), d.get("offset")): d for d in observed.letters}
    by_key: dict = {}
    for letter in observed.letters:
        by_key.setdefault(letter.get("key"), letter)
    rows = []
    for item in sent:
        hostile, letter = item.hostile, None
        if item.error is None:
            letter = by_offset.get((item.topic, item.partition, item.offset)) or (
                by_key.get(hostile.key) if hostile.key is not None else None)
        answered = hostile.answer_id is not None and observed.predictions[hostile.answer_id] >= hostile.answers_needed
        ok = letter is not None or (answered and hostile.expect != "dead-letter")
        rows.append({"kind": hostile.kind, "topic": item.topic, "partition": item.partition, "offset": item.offset,
                     "expect": hostile.expect, "outcome": outcome_of(item, letter, answered, committed),
                     "accounted": ok, "sent": item.error is None})
    return rows
