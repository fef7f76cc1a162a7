"""The JSON messages on every topic (docs/method.md section 3), validated by pydantic. Every message has v = 1.

Parsing goes through `parse`, which turns any failure (no value, an oversized message, bad UTF-8, bad JSON,
a missing field, a wrong type, an empty or oversized field, a label the model does not have) into a
`MessageError` carrying one readable reason for the dead-letter topic. Every field has a size limit.

The edge is strict: an int field takes only a JSON integer (not true, 1.0 or "1"), a number field a finite JSON
number, JSON with a duplicate key or a NaN/Infinity literal is refused (another reader would see another
message), and a message's times must be plausible (after 2000, at most MAX_CLOCK_AHEAD_S ahead of this host).
"""

from __future__ import annotations

import base64
import functools
import hashlib
import json
import re
import time
from typing import TYPE_CHECKING, Annotated, Any, Literal, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    ValidationError,
    ValidationInfo,
    field_validator,
)

from dimee.method.control import Control
from dimee.method.routing_policy import RoutingPolicy
from dimee.method.tiers import Tier, TierPlan
from dimee.streaming.config import setting_default

if TYPE_CHECKING:  # dimee.streaming.transport imports this module
    from dimee.streaming.transport.base import Record

# The settings' defaults (their one home), for a message read without a stage's settings in its context.
DEFAULT_MAX_TEXT_CHARS: int = setting_default("max_text_chars")
DEFAULT_MAX_MESSAGE_BYTES: int = setting_default("max_message_bytes")
MAX_META_BYTES = 16_384  # the serialised `meta` a sample may carry
MAX_NAME_CHARS = 256  # router and worker names
DEAD_LETTER_PAYLOAD_BYTES = 65_536  # a dead letter keeps at most this much of the original payload
MAX_META_DEPTH = 32  # nesting levels of `meta` (json.loads itself stops only near Python's recursion limit)
# Times a message carries: none before 2000-01-01 UTC, none further ahead of this host's clock than a day. A
# producer whose clock runs fast (by less) is served; `envelope` keeps its times out of the record timestamps.
EARLIEST_TIME = 946_684_800.0
MAX_CLOCK_AHEAD_S = 86_400.0


def clip_text(text: str, limit: int = DEFAULT_MAX_TEXT_CHARS) -> str:
    """The one rule for long texts, in the stream and in the offline evaluator alike: keep the first `limit`
    characters. Absurd sizes are refused earlier, by the message size limit."""
    return text if len(text) <= limit else text[:limit]


def now() -> float:
    return time.time()


_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")  # Unicode category Cc


def _clean_id(value: str) -> str:
    """An id names a sample in logs, keys and files: never blank, never a control character."""
    if not value.strip():
        raise ValueError("id is blank")
    if (control := _CONTROL.search(value)) is not None:
        raise ValueError(f"id has a control character ({control.group()!r})")
    return value


def _not_ahead(value: float) -> float:
    if (ahead := value - now()) > MAX_CLOCK_AHEAD_S:
        raise ValueError(f"{value:.6g} is {ahead / 3600:.4g} h ahead of this host's clock "
                         f"(at most {MAX_CLOCK_AHEAD_S / 3600:g} h)")
    return value


def _plausible(value: float) -> float:
    if value < EARLIEST_TIME:
        raise ValueError(f"{value:.6g} is before 2000-01-01 (a time in seconds since 1970 is expected)")
    return _not_ahead(value)  # one validator, not two: each costs a call out of pydantic's core


def _too_deep(value: Any, levels: int) -> bool:
    """Whether JSON data nests deeper than `levels` (level by level: no recursion to run out of)."""
    layer = [value]
    for _ in range(levels):
        layer = [child for item in layer if isinstance(item, dict | list)
                 for child in (item.values() if isinstance(item, dict) else item)]
        if not layer:
            return False
    return any(isinstance(item, dict | list) for item in layer)


def _plain_meta(value: dict[str, Any]) -> dict[str, Any]:
    if not value:  # the usual case, on the hot path
        return value
    if _too_deep(value, MAX_META_DEPTH):
        raise ValueError(f"meta is nested deeper than {MAX_META_DEPTH} levels")
    try:
        size = len(json.dumps(value, ensure_ascii=False, allow_nan=False).encode())
    except UnicodeEncodeError as exc:
        raise ValueError("meta holds a string that is not valid Unicode") from exc
    except ValueError as exc:  # NaN or infinity (1e400 reads as infinity): not JSON
        raise ValueError("meta holds a number that is not finite") from exc
    if size > MAX_META_BYTES:
        raise ValueError(f"meta has {size} bytes, more than the limit of {MAX_META_BYTES}")
    return value


Id = Annotated[str, Field(min_length=1, max_length=128), AfterValidator(_clean_id)]
# A JSON number: an integer is one, true, "1", NaN and infinity are not.
Number = Annotated[float, Field(strict=True, allow_inf_nan=False)]
# The times of a sample and a routed message: plausible (after 2000, not far ahead). A prediction's and a dead
# letter's are bounded above only: they are the worker's or the stage's clock, or the routed message's times,
# checked when the worker read it, and their consumers (sink, client, dashboard) stamp no record with them.
Clock = Annotated[Number, AfterValidator(_not_ahead)]
Time = Annotated[Number, AfterValidator(_plausible)]
Meta = Annotated[dict[str, Any], AfterValidator(_plain_meta)]


class Message(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=False)
    v: Literal[1] = 1

    @field_validator("v", mode="before")
    @classmethod
    def _integer_one(cls, value: Any) -> Any:
        if type(value) is not int:  # Literal[1] alone takes true and 1.0 (they equal 1)
            raise ValueError(f"v must be the integer 1, not {value!r}")
        return value

    def to_bytes(self) -> bytes:
        return self.model_dump_json(exclude_none=True).encode()


class Sample(Message):
    id: Id
    text: str = Field(min_length=1)
    text_pair: str | None = None
    label: StrictInt | None = Field(None, ge=0)
    produced_at: Time = Field(default_factory=now, description="seconds since 1970: after 2000, at most "
                              "MAX_CLOCK_AHEAD_S (a day) ahead of the reader's clock")
    meta: Meta = Field(default_factory=dict)

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

    @field_validator("text", "text_pair")
    @classmethod
    def _within_limit(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None:
            return value
        if not value.strip():
            raise ValueError("text is blank")
        return clip_text(value, (info.context or {}).get("max_text_chars", DEFAULT_MAX_TEXT_CHARS))


class CostBreakdown(BaseModel):
    processing: Number
    offload: Number
    cloud: Number
    total: Number

    def __add__(self, other: CostBreakdown) -> CostBreakdown:
        return CostBreakdown(processing=self.processing + other.processing, offload=self.offload + other.offload,
                             cloud=self.cloud + other.cloud, total=self.total + other.total)


class Hop(BaseModel):
    """One tier a sample passed through before the one now serving it."""

    tier: Tier
    layers_run: StrictInt = Field(ge=0)
    cost: CostBreakdown


def worker_context(tier: Tier, plan: TierPlan, pools: int, hidden_size: int) -> dict[str, Any]:
    """What a tier worker checks routed messages against (its parse context; Routed's validators read it): its
    tier, the deployment's tiers in order with their caps, the calibration's pools, the model's hidden size."""
    return {"tier": tier, "plan": plan, "pools": pools, "hidden_size": hidden_size}


def _a_class(value: int, info: ValidationInfo) -> int:
    """A predicted class the model has (where the parse context names how many)."""
    classes = (info.context or {}).get("num_labels")
    if classes is not None and value >= classes:
        raise ValueError(f"class {value} is not one of the model's {classes} classes (0..{classes - 1})")
    return value


def _audited_tier(value: Tier, info: ValidationInfo) -> Tier:
    """Audits check the answers of the tiers below the last (where the parse context has the plan)."""
    plan = (info.context or {}).get("plan")
    if plan is not None and value not in plan.tiers[:-1]:
        raise ValueError(f"the {value.value} tier's answers are not audited: an audit checks a lower tier's answer "
                         f"({', '.join(t.value for t in plan.tiers[:-1])})")
    return value


class AuditOf(BaseModel):
    """The answer a lower tier gave, which the full model on the cloud checks (a shadow, not an escalation)."""

    model_config = ConfigDict(extra="forbid")
    tier: Tier
    label_pred: StrictInt = Field(ge=0)
    confidence: Number = Field(ge=0.0, le=1.0)
    exit_layer: StrictInt = Field(ge=1)

    _known_class = field_validator("label_pred")(_a_class)
    _below_the_last = field_validator("tier")(_audited_tier)

    @field_validator("exit_layer")
    @classmethod
    def _within_its_cap(cls, value: int, info: ValidationInfo) -> int:
        plan, tier = (info.context or {}).get("plan"), info.data.get("tier")
        if plan is not None and tier in plan.tiers and value > plan.cap(tier):
            raise ValueError(f"exit layer {value} is past the {tier.value} tier's cap ({plan.cap(tier)})")
        return value


class Routed(Sample):
    tier: Tier
    pool: StrictInt = Field(ge=0)
    distances: list[Number | None]
    centroid_version: StrictInt = Field(ge=0)
    router: str = Field(max_length=MAX_NAME_CHARS)
    routed_at: Time = Field(default_factory=now)
    # Escalation: the tiers already passed, where to resume, and (mode `continue`) the hidden state there.
    hops: list[Hop] = Field(default_factory=list)
    start_layer: StrictInt = Field(0, ge=0)
    hidden_fp16: str | None = Field(None, validate_default=True,  # its absence is checked too
                                    description="base64 of the (tokens, hidden) fp16 state at start_layer")
    digest: str | None = Field(None, max_length=64, description="the sample's content digest (Sample.content_digest)")
    policy: RoutingPolicy | None = Field(None, description="the routing policy the router served; the workers "
                                         "serve this same one (thresholds, escalation, feedback)")
    audit_of: AuditOf | None = Field(None, description="an audit copy: the full model checks this lower tier's "
                                     "answer (the sample was answered already; no second prediction)")
    control: Control | None = Field(None, description="the live threshold offset the router read (and its "
                                    "version): the workers add it to the exit thresholds below the cloud")

    # Checks against the worker's facts (worker_context) run where parse has them; a message built in code has none.
    @field_validator("tier")
    @classmethod
    def _this_tier(cls, value: Tier, info: ValidationInfo) -> Tier:
        served = (info.context or {}).get("tier")
        if served is not None and value != served:
            raise ValueError(f"a message for the {value.value} tier on the {served.value} worker's topic")
        return value

    @field_validator("pool")
    @classmethod
    def _known_pool(cls, value: int, info: ValidationInfo) -> int:
        pools = (info.context or {}).get("pools")
        if pools is not None and value >= pools:
            raise ValueError(f"pool {value} is not one of the calibration's {pools} pools (0..{pools - 1})")
        return value

    @field_validator("hops")
    @classmethod
    def _climbed_here(cls, value: list[Hop], info: ValidationInfo) -> list[Hop]:
        """A sample climbs the tiers in order, each once: its hops are lower tiers than this one, ascending."""
        context = info.context or {}
        plan, served = context.get("plan"), context.get("tier")
        if plan is None or served is None:
            return value
        below = plan.tiers[: plan.index(served)]
        places = [below.index(hop.tier) if hop.tier in below else len(below) for hop in value]
        if any(place == len(below) for place in places) or places != sorted(set(places)):
            raise ValueError(f"hops {[hop.tier.value for hop in value]}: each hop must be a lower tier than "
                             f"{served.value}, in order, each once ({', '.join(t.value for t in below) or 'none'})")
        return value

    @field_validator("start_layer")
    @classmethod
    def _resumable(cls, value: int, info: ValidationInfo) -> int:
        """0 (from the first layer), or where the tier below stopped: its cap, whose hidden state came along."""
        context = info.context or {}
        plan, served, hops = context.get("plan"), context.get("tier"), info.data.get("hops")
        if plan is None or served is None or value == 0:
            return value
        if value >= plan.cap(served):
            raise ValueError(f"start_layer {value} is not below this tier's cap {plan.cap(served)}")
        if hops is not None and not hops:
            raise ValueError(f"start_layer {value} resumes a lower tier's state, and the message has no hop")
        if hops and value != plan.cap(hops[-1].tier):
            raise ValueError(f"start_layer {value} is not where its last hop ({hops[-1].tier.value}) stopped: "
                             f"layer {plan.cap(hops[-1].tier)}")
        return value

    @field_validator("hidden_fp16")
    @classmethod
    def _fits_the_model(cls, value: str | None, info: ValidationInfo) -> str | None:
        start = info.data.get("start_layer")
        if start is not None and (start > 0) != (value is not None):
            raise ValueError(f"start_layer {start} resumes from a hidden state, and the message carries none"
                             if value is None else "a hidden state with start_layer 0 (it is the state after "
                             "start_layer layers: start_layer > 0)")
        hidden_size = (info.context or {}).get("hidden_size")
        if value is not None and hidden_size is not None:
            # its size without decoding it (the worker decodes it once): base64 is 4 characters per 3 bytes
            if len(value) % 4:
                raise ValueError(f"not base64 ({len(value)} characters, not a multiple of 4)")
            size, row = len(value) // 4 * 3 - value.endswith("=") - value.endswith("=="), 2 * hidden_size
            if size == 0 or size % row:
                raise ValueError(f"the hidden state has {size} bytes, not a whole number of tokens × {hidden_size} "
                                 f"fp16 values ({row} bytes a token)")
        return value


    @field_validator("audit_of")
    @classmethod
    def _audit_from_below(cls, value: AuditOf | None, info: ValidationInfo) -> AuditOf | None:
        """An audit copy runs the whole model from the first layer on the last tier, for a lower tier's answer."""
        if value is None:
            return value
        if info.data.get("hops") or info.data.get("start_layer"):
            raise ValueError("an audit copy runs the whole model: no hops, start_layer 0")
        plan, served = (info.context or {}).get("plan"), (info.context or {}).get("tier")
        if plan is not None and served is not None and (served != plan.tiers[-1] or value.tier not in plan.tiers[:-1]):
            raise ValueError(f"an audit of the {value.tier.value} answer on the {served.value} worker: audits run "
                             f"on the {plan.tiers[-1].value}, of a lower tier's answer")
        return value


class Timings(BaseModel):
    produced_at: Clock
    routed_at: Clock
    started_at: Clock
    finished_at: Clock


class Prediction(Message):
    id: Id
    tier: Tier
    label_pred: StrictInt
    label_name: str | None = Field(None, max_length=MAX_NAME_CHARS,
                                   description="the model's name for label_pred (its work folder's labels), so a "
                                               "reader needs no label list; absent from workers before it")
    confidence: Number  # a NaN result is dead-lettered by the worker, never published as null
    exit_layer: StrictInt = Field(ge=1)
    layers_run: StrictInt = Field(ge=1)
    cost: CostBreakdown
    label: StrictInt | None = None
    correct: StrictBool | None = None
    model: str
    timings: Timings
    worker: str
    pool: StrictInt | None = None
    path: list[Tier] = Field(default_factory=list, description="every tier the sample visited, in order")
    digest: str | None = Field(None, max_length=64, description="the sample's content digest (Sample.content_digest)")
    meta: Meta = Field(default_factory=dict)


class Audit(Message):
    """The full model's answer to a sample a lower tier answered: whether they agree, and what it cost. Every field
    is bounded (classes the model has, a tier below the last, a cost ≥ 0) and `agree` says what the two answers
    say; the controller also refuses one that answers no audit copy of this pipeline (routers/controller.py)."""

    id: Id
    tier: Tier  # the tier whose answer was checked
    label_pred: StrictInt = Field(ge=0)  # that tier's answer
    full_pred: StrictInt = Field(ge=0)  # the full model's
    agree: StrictBool
    label: StrictInt | None = Field(None, ge=0)
    cost: CostBreakdown  # the shadow's: the text to the cloud, the whole model there
    worker: str = Field(min_length=1, max_length=MAX_NAME_CHARS)
    digest: str | None = Field(None, max_length=64)
    at: Clock = Field(default_factory=now)

    _known_classes = field_validator("label_pred", "full_pred")(_a_class)
    _below_the_last = field_validator("tier")(_audited_tier)

    @field_validator("label")
    @classmethod
    def _known_label(cls, value: int | None, info: ValidationInfo) -> int | None:
        return value if value is None else _a_class(value, info)

    @field_validator("cost")
    @classmethod
    def _not_negative(cls, value: CostBreakdown) -> CostBreakdown:
        if min(value.processing, value.offload, value.cloud, value.total) < 0:
            raise ValueError("a cost is never negative")
        return value

    @field_validator("agree")
    @classmethod
    def _says_what_the_answers_say(cls, value: bool, info: ValidationInfo) -> bool:
        checked, full = info.data.get("label_pred"), info.data.get("full_pred")
        if checked is not None and full is not None and value != (checked == full):
            raise ValueError(f"agree is {str(value).lower()}, and the answers are {checked} and {full}")
        return value


class Feedback(Message):
    """A worker's report of a sample's observed pool (from where it exited), for label-free adaptation."""

    id: Id
    text: str = Field(min_length=1)
    text_pair: str | None = None
    routed_pool: StrictInt = Field(ge=0)
    observed_pool: StrictInt = Field(ge=0)


class DeadLetter(Message):
    stage: str
    topic: str
    partition: StrictInt
    offset: StrictInt
    key: str | None = None
    error: str
    payload: str
    payload_base64: StrictBool = False
    # A payload longer than DEAD_LETTER_PAYLOAD_BYTES is cut, so the dead letter itself fits the broker: its
    # length and digest say what it was.
    payload_truncated: StrictBool = False
    payload_bytes: StrictInt | None = None
    payload_sha256: str | None = None
    at: Clock = Field(default_factory=now)

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
    """A message's timing and trace fields again as a record timestamp (the latest time it carries, at most
    now) and
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
    # Never later than this stage's clock, whatever the message says: Kafka 4.x refuses a record more than
    # log.message.timestamp.after.max.ms (1 h) ahead of the broker's, and a refused output would fail for ever.
    return (min(max(known), now()) if known else None), headers


SCHEMAS: dict[str, type[Message]] = {"sample": Sample, "routed": Routed, "prediction": Prediction,
                                     "audit": Audit, "feedback": Feedback, "dead-letter": DeadLetter}
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


class _Ambiguous(ValueError):
    """JSON that readers disagree on: a key given twice (Python keeps the last, others the first or refuse), or
    a NaN or Infinity literal (not JSON)."""


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    found = dict(pairs)
    if len(found) < len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _Ambiguous(f"duplicate key {key!r}")
            seen.add(key)
    return found


def _not_a_number(literal: str) -> None:
    raise _Ambiguous(f"{literal} is not a JSON number (numbers must be finite)")


def _read_json(text: str) -> dict[str, Any]:
    """The payload's JSON object, refusing what `_Ambiguous` says. The hooks cost about 1 µs a message."""
    try:
        data = json.loads(text, object_pairs_hook=_unique_keys, parse_constant=_not_a_number)
    except (json.JSONDecodeError, _Ambiguous) as exc:
        raise MessageError(f"invalid JSON: {exc}") from exc
    except RecursionError as exc:
        raise MessageError("invalid JSON: nested too deeply") from exc
    if type(data) is not dict:
        raise MessageError(f"message: Input should be an object, not a JSON {type(data).__name__}")
    return data


def parse(kind: type[M], value: bytes | None, context: dict | None = None,
          max_text_chars: int | None = None, key: bytes | None = None) -> M:
    """`context`: limits and facts the message is checked against (max_text_chars, max_message_bytes,
    num_labels, a worker's `worker_context`). `key`: the record's key, which must be the message's id."""
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
        message = kind.model_validate(_read_json(text), context=context)
    except ValidationError as exc:
        raise MessageError(_reason(exc)) from exc
    if key is not None and _present(kind, ("id",)) and key != message.id.encode():  # type: ignore[attr-defined]
        # the key partitions, the id names: a record saying two ids is answered under one and routed by the other
        raise MessageError(f"the record's key says '{key.decode('utf-8', 'backslashreplace')}', "
                           f"the message id '{message.id}'")  # type: ignore[attr-defined]
    return message
