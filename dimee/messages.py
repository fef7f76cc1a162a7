"""The JSON messages on every topic (DESIGN.md section 3), validated by pydantic. Every message has v = 1.

Parsing goes through `parse`, which turns any failure (no value, an oversized message, bad UTF-8, bad JSON,
a missing field, a wrong type, an empty or oversized field, a label the model does not have) into a
`MessageError` carrying one readable reason for the dead-letter topic. Every field has a size limit.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import json
import time
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator

from dimee.routing_policy import RoutingPolicy
from dimee.tiers import Tier
from dimee.transport.base import Record

DEFAULT_MAX_TEXT_CHARS = 10_000  # far beyond what the encoder reads (max_length tokens): cutting there changes nothing
DEFAULT_MAX_MESSAGE_BYTES = 1_000_000  # under Kafka's default max.message.bytes (1 MiB)
MAX_META_BYTES = 16_384  # the serialised `meta` a sample may carry
MAX_NAME_CHARS = 256  # router and worker names
DEAD_LETTER_PAYLOAD_BYTES = 65_536  # a dead letter keeps at most this much of the original payload


def clip_text(text: str, limit: int = DEFAULT_MAX_TEXT_CHARS) -> str:
    """The one rule for long texts, in the stream and in the offline evaluator alike: keep the first `limit`
    characters. Absurd sizes are refused earlier, by the message size limit."""
    return text if len(text) <= limit else text[:limit]


def now() -> float:
    return time.time()


class Message(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=False)
    v: Literal[1] = 1

    def to_bytes(self) -> bytes:
        return self.model_dump_json(exclude_none=True).encode()


class Sample(Message):
    id: str = Field(min_length=1, max_length=128)
    text: str = Field(min_length=1)
    text_pair: str | None = None
    label: int | None = Field(None, ge=0)
    produced_at: float = Field(default_factory=now, allow_inf_nan=False)
    meta: dict[str, Any] = Field(default_factory=dict)

    def content_digest(self) -> str:
        """What the sample says, in 16 hex digits: tells a redelivered sample from another one reusing its id."""
        content = f"{self.text}\x00{self.text_pair or ''}".encode()
        return hashlib.sha256(content).hexdigest()[:16]

    @field_validator("label")
    @classmethod
    def _known_label(cls, value: int | None, info: ValidationInfo) -> int | None:
        classes = (info.context or {}).get("num_labels")
        if value is not None and classes is not None and value >= classes:
            raise ValueError(f"label {value} is not one of the model's {classes} classes (0..{classes - 1})")
        return value

    @field_validator("meta")
    @classmethod
    def _small_meta(cls, value: dict[str, Any]) -> dict[str, Any]:
        size = len(json.dumps(value, ensure_ascii=False).encode())
        if size > MAX_META_BYTES:
            raise ValueError(f"meta has {size} bytes, more than the limit of {MAX_META_BYTES}")
        return value

    @field_validator("text", "text_pair")
    @classmethod
    def _within_limit(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None:
            return value
        if not value.strip():
            raise ValueError("text is blank")
        return clip_text(value, (info.context or {}).get("max_text_chars", DEFAULT_MAX_TEXT_CHARS))


class CostBreakdown(BaseModel):
    processing: float
    offload: float
    cloud: float
    total: float

    def __add__(self, other: CostBreakdown) -> CostBreakdown:
        return CostBreakdown(processing=self.processing + other.processing, offload=self.offload + other.offload,
                             cloud=self.cloud + other.cloud, total=self.total + other.total)


class Hop(BaseModel):
    """One tier a sample passed through before the one now serving it."""

    tier: Tier
    layers_run: int = Field(ge=0)
    cost: CostBreakdown


class Routed(Sample):
    tier: Tier
    pool: int = Field(ge=0)
    distances: list[float | None]
    centroid_version: int = Field(ge=0)
    router: str = Field(max_length=MAX_NAME_CHARS)
    routed_at: float = Field(default_factory=now, allow_inf_nan=False)
    # Escalation: the tiers already passed, where to resume, and (mode `continue`) the hidden state there.
    hops: list[Hop] = Field(default_factory=list)
    start_layer: int = Field(0, ge=0)
    hidden_fp16: str | None = Field(None, description="base64 of the (tokens, hidden) fp16 state at start_layer")
    digest: str | None = Field(None, max_length=64, description="the sample's content digest (Sample.content_digest)")
    policy: RoutingPolicy | None = Field(None, description="the routing policy the router served; the workers "
                                         "serve this same one (thresholds, escalation, feedback)")


class Timings(BaseModel):
    produced_at: float
    routed_at: float
    started_at: float
    finished_at: float


class Prediction(Message):
    id: str = Field(min_length=1, max_length=128)
    tier: Tier
    label_pred: int
    confidence: float
    exit_layer: int = Field(ge=1)
    layers_run: int = Field(ge=1)
    cost: CostBreakdown
    label: int | None = None
    correct: bool | None = None
    model: str
    timings: Timings
    worker: str
    pool: int | None = None
    path: list[Tier] = Field(default_factory=list, description="every tier the sample visited, in order")
    digest: str | None = Field(None, max_length=64, description="the sample's content digest (Sample.content_digest)")
    meta: dict[str, Any] = Field(default_factory=dict)


class Feedback(Message):
    """A worker's report of a sample's observed pool (from where it exited), for label-free adaptation."""

    id: str = Field(min_length=1, max_length=128)
    text: str = Field(min_length=1)
    text_pair: str | None = None
    routed_pool: int = Field(ge=0)
    observed_pool: int = Field(ge=0)


class DeadLetter(Message):
    stage: str
    topic: str
    partition: int
    offset: int
    key: str | None = None
    error: str
    payload: str
    payload_base64: bool = False
    # A payload longer than DEAD_LETTER_PAYLOAD_BYTES is cut, so the dead letter itself fits the broker: its
    # length and digest say what it was.
    payload_truncated: bool = False
    payload_bytes: int | None = None
    payload_sha256: str | None = None
    at: float = Field(default_factory=now)

    @classmethod
    def for_record(cls, stage: str, record: Record, error: str) -> DeadLetter:
        value = record.value if record.value is not None else b""
        kept = value[:DEAD_LETTER_PAYLOAD_BYTES]
        try:
            payload, encoded = kept.decode("utf-8"), False
        except UnicodeDecodeError:
            payload, encoded = base64.b64encode(kept).decode("ascii"), True
        cut = len(kept) < len(value)
        key = record.key
        return cls(stage=stage, topic=record.topic, partition=record.partition, offset=record.offset,
                   key=key.decode("utf-8", "replace")[:256] if key is not None else None,
                   error=error[:2000], payload=payload, payload_base64=encoded, payload_truncated=cut,
                   payload_bytes=len(value) if cut else None,
                   payload_sha256=hashlib.sha256(value).hexdigest() if cut else None)

    def original_bytes(self) -> bytes:
        return base64.b64decode(self.payload) if self.payload_base64 else self.payload.encode("utf-8")


TIMING_FIELDS = ("produced_at", "routed_at", "started_at", "finished_at")
TRACE_FIELDS = ("id", "tier", "router", "worker")


HEADER_NAMES = {name: f"dimee-{name.replace('_', '-')}" for name in (*TRACE_FIELDS, *TIMING_FIELDS)}


@functools.cache
def _present(kind: type[BaseModel], names: tuple[str, ...]) -> tuple[str, ...]:
    """Which of the names a message class declares (asking a pydantic model for a field it lacks is slow)."""
    return tuple(name for name in names if name in kind.model_fields)


def envelope(message: Message) -> tuple[float | None, tuple[tuple[str, bytes], ...]]:
    """A message's timing and trace fields again as a record timestamp (the latest time it carries) and
    record headers (`dimee-produced-at`, `dimee-router`, …), so brokers and tools can read them without
    parsing the value. The value keeps them too: Kafka 0.9 has neither headers nor timestamps. (Read by
    attribute, not by dumping the message: this runs once per message on every stage's hot path.)"""
    timings = message.timings if _present(type(message), ("timings",)) else None
    source = message if timings is None else timings
    trace = [(name, getattr(message, name)) for name in _present(type(message), TRACE_FIELDS)]
    times = [(name, getattr(source, name)) for name in _present(type(source), TIMING_FIELDS)]
    headers = tuple((HEADER_NAMES[name], str(value).encode()) for name, value in (*trace, *times)
                    if value is not None)
    known = [value for _, value in times if value is not None]
    return (max(known) if known else None), headers


SCHEMAS: dict[str, type[Message]] = {"sample": Sample, "routed": Routed, "prediction": Prediction,
                                     "feedback": Feedback, "dead-letter": DeadLetter}
"""Every message on dimee's topics, by the name `dimee schema` gives its JSON Schema."""


class MessageError(ValueError):
    """A payload that is not a valid message; str() is the reason written to the dead-letter topic."""


M = TypeVar("M", bound=Message)


def _reason(exc: ValidationError) -> str:
    parts = []
    for error in exc.errors()[:5]:
        where = ".".join(str(p) for p in error["loc"]) or "message"
        parts.append(f"{where}: {error['msg']}")
    return "; ".join(parts)


def parse(kind: type[M], value: bytes | None, context: dict | None = None,
          max_text_chars: int | None = None) -> M:
    """`context`: limits and facts the message is checked against (max_text_chars, max_message_bytes,
    num_labels)."""
    context = dict(context or {})
    if max_text_chars is not None:
        context["max_text_chars"] = max_text_chars
    if value is None:
        raise MessageError("the record has no value (a tombstone)")
    limit = context.get("max_message_bytes", DEFAULT_MAX_MESSAGE_BYTES)
    if len(value) > limit:
        raise MessageError(f"message has {len(value)} bytes, more than the limit of {limit}")
    try:
        text = value.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise MessageError(f"payload is not UTF-8 ({exc.reason} at byte {exc.start})") from exc
    try:
        return kind.model_validate_json(text, context=context)
    except ValidationError as exc:
        if any(e["type"] == "json_invalid" for e in exc.errors()):
            raise MessageError(f"invalid JSON: {exc.errors()[0]['msg']}") from exc
        raise MessageError(_reason(exc)) from exc
