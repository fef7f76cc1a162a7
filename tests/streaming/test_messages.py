"""Message validation: every malformed payload becomes one readable reason."""

import json

import pytest

from dimee.streaming import messages
from dimee.streaming.messages import DeadLetter, MessageError, Prediction, Routed, Sample, envelope, parse
from dimee.streaming.transport.base import Record


@pytest.mark.parametrize(("payload", "reason"), [
    (b"{not json", "invalid JSON"),
    (b"\xff\xfeabc", "not UTF-8"),
    (b'{"id": "a"}', "text: Field required"),
    (b'{"id": "a", "text": ""}', "text: String should have at least 1 character"),
    (b'{"id": "a", "text": "   "}', "text is blank"),
    (b'{"id": 7, "text": "hi"}', "id: Input should be a valid string"),
    (b'{"id": "a", "text": "hi", "label": "pos"}', "label: Input should be a valid integer"),
    (b'{"id": "", "text": "hi"}', "id: String should have at least 1 character"),
    (b'{"id": "' + b"i" * 129 + b'", "text": "hi"}', "id: String should have at most 128 characters"),
    (b'{"v": 2, "id": "a", "text": "hi"}', "v: Input should be 1"),
    (b'{"id": "a", "text": "hi", "surprise": 1}', "surprise: Extra inputs are not permitted"),
    (b"[1, 2]", "Input should be an object"),
])
def test_malformed_samples_give_a_reason(payload, reason):
    with pytest.raises(MessageError, match=reason):
        parse(Sample, payload, max_text_chars=100)


def test_a_long_text_is_cut_as_the_offline_evaluator_cuts_it():
    """Defect: the stream dead-lettered texts over the limit that the offline evaluator read (truncated), and
    scored only the survivors. Both now keep the first max_text_chars characters."""
    from dimee.data.dataset import TextDataset
    from dimee.streaming.messages import DEFAULT_MAX_TEXT_CHARS

    text = "a long review " * 1000  # 14,000 characters
    streamed = parse(Sample, Sample(id="a", text="x").model_copy(update={"text": text}).to_bytes())
    offline = TextDataset("d", [text], [0], ["neg", "pos"], text_pairs=[text])
    assert streamed.text == offline.texts[0] == offline.text_pairs[0] == text[:DEFAULT_MAX_TEXT_CHARS]
    assert parse(Sample, b'{"id": "a", "text": "' + b"x" * 101 + b'"}', max_text_chars=100).text == "x" * 100


def test_valid_sample_round_trip():
    sample = parse(Sample, b'{"id": "a", "text": "fine", "text_pair": "ok", "label": 1, "meta": {"d": "x"}}')
    assert sample.v == 1 and sample.label == 1 and sample.produced_at > 0
    assert parse(Sample, sample.to_bytes()) == sample


def test_routed_carries_the_sample():
    routed = Routed(id="a", text="t", label=0, tier="edge", pool=1, distances=[1.0, 0.5, None],
                    centroid_version=3, router="r1")
    back = parse(Routed, routed.to_bytes())
    assert back.tier.value == "edge" and back.distances == [1.0, 0.5, None]
    with pytest.raises(MessageError, match="tier"):
        parse(Routed, routed.to_bytes().replace(b'"edge"', b'"moon"'))
    with pytest.raises(MessageError):
        parse(Prediction, routed.to_bytes())


def test_dead_letter_keeps_the_original_payload():
    text = DeadLetter.for_record("router", Record("t", 1, 5, b"k", b'{"id": 1}'), "id: bad")
    assert not text.payload_base64 and text.original_bytes() == b'{"id": 1}'
    binary = DeadLetter.for_record("router", Record("t", 1, 6, None, b"\xff\x00"), "not UTF-8")
    assert binary.payload_base64 and binary.original_bytes() == b"\xff\x00" and binary.key is None
    assert parse(DeadLetter, binary.to_bytes()).original_bytes() == b"\xff\x00"


def test_the_envelope_repeats_timings_and_trace_fields_as_timestamp_and_headers():
    prediction = Prediction.model_validate({
        "id": "a", "tier": "edge", "label_pred": 1, "confidence": 0.9, "exit_layer": 2, "layers_run": 2,
        "cost": {"processing": 0.1, "offload": 0.2, "cloud": 0.0, "total": 0.3}, "model": "m", "worker": "w-1",
        "timings": {"produced_at": 1.5, "routed_at": 2.0, "started_at": 3.0, "finished_at": 4.25}})
    timestamp, headers = envelope(prediction)
    assert timestamp == 4.25  # the record's time is when the prediction was made
    assert dict(headers) == {"dimee-id": b"a", "dimee-tier": b"edge", "dimee-worker": b"w-1",
                             "dimee-produced-at": b"1.5", "dimee-routed-at": b"2.0", "dimee-started-at": b"3.0",
                             "dimee-finished-at": b"4.25"}


# --- message times (audit item 2): bounded at parse, and never a record timestamp ahead of the stage's clock ---

@pytest.mark.parametrize(("produced_at", "reason"), [
    ("32503680000.0", "ahead of this host's clock"),  # the year 3000
    ("1e300", "ahead of this host's clock"),
    ("-5.0", "before 2000-01-01"),
    ("0", "before 2000-01-01"),
    ("1e400", "finite"),  # read as inf
])
def test_absurd_message_times_are_refused(produced_at, reason):
    payload = b'{"id": "a", "text": "hi", "produced_at": ' + produced_at.encode() + b"}"
    with pytest.raises(MessageError, match=reason):
        parse(Sample, payload)
    routed = Routed(id="a", text="hi", tier="edge", pool=1, distances=[], centroid_version=0, router="r")
    routed_at = json.dumps({**json.loads(routed.to_bytes()), "routed_at": "T"}).replace('"T"', produced_at)
    with pytest.raises(MessageError, match=f"routed_at: .*{reason}"):
        parse(Routed, routed_at.encode())


def test_a_time_two_days_ahead_is_refused_and_two_hours_ahead_served_with_a_timestamp_of_now(monkeypatch):
    import time

    days = time.time() + 2 * 86_400
    with pytest.raises(MessageError, match=r"produced_at: .*ahead of this host's clock"):
        parse(Sample, f'{{"id": "a", "text": "hi", "produced_at": {days}}}'.encode())
    ahead = time.time() + 2 * 3600  # a producer whose clock is 2 h fast: served, not dead-lettered
    sample = parse(Sample, f'{{"id": "a", "text": "hi", "produced_at": {ahead}}}'.encode())
    routed = Routed(**sample.__dict__, tier="edge", pool=1, distances=[], centroid_version=0, router="r")
    clock = ahead - 2 * 3600
    monkeypatch.setattr(messages, "now", lambda: clock)  # the stage's clock, fixed
    timestamp, headers = envelope(routed)
    # Kafka 4.x refuses a record more than an hour ahead of the broker: the stage stamps its own clock
    assert timestamp == clock
    assert dict(headers)["dimee-produced-at"] == str(ahead).encode()  # the header keeps what the message says


def test_a_prediction_with_a_non_finite_confidence_is_refused():
    """Audit item 6: a NaN hidden state gave `"confidence": null` on the predictions topic."""
    from pydantic import ValidationError

    fields = {"id": "a", "tier": "edge", "label_pred": 1, "exit_layer": 2, "layers_run": 2, "model": "m",
              "worker": "w", "cost": {"processing": 0.1, "offload": 0.2, "cloud": 0.0, "total": 0.3},
              "timings": {"produced_at": 1.5, "routed_at": 2.0, "started_at": 3.0, "finished_at": 4.25}}
    for bad in (float("nan"), float("inf")):
        with pytest.raises(ValidationError, match="finite"):
            Prediction.model_validate({**fields, "confidence": bad})
    with pytest.raises(ValidationError, match="finite"):
        Prediction.model_validate({**fields, "confidence": 0.5, "cost": {**fields["cost"], "total": float("nan")}})


# --- the schema edge is strict (audit item 8): what the contract says is an int, a string or a number is one ---

@pytest.mark.parametrize(("payload", "reason"), [
    (b'{"id": "a", "text": "hi", "label": true}', "label: Input should be a valid integer"),
    (b'{"id": "a", "text": "hi", "label": "1"}', "label: Input should be a valid integer"),
    (b'{"id": "a", "text": "hi", "label": 1.0}', "label: Input should be a valid integer"),
    (b'{"v": true, "id": "a", "text": "hi"}', "v: .*the integer 1"),
    (b'{"v": 1.0, "id": "a", "text": "hi"}', "v: .*the integer 1"),
    (b'{"id": "a", "text": "hi", "produced_at": "1700000000"}', "produced_at: Input should be a valid number"),
    (b'{"id": "a", "text": "hi", "produced_at": true}', "produced_at: Input should be a valid number"),
    (b'{"id": "a", "text": "hi", "id": "b"}', "invalid JSON: duplicate key 'id'"),
    (b'{"id": "a", "text": "hi", "meta": {"k": 1, "k": 2}}', "invalid JSON: duplicate key 'k'"),
    (b'{"id": "a", "text": "hi", "meta": {"x": NaN}}', "invalid JSON: NaN .*finite"),
    (b'{"id": "a", "text": "hi", "meta": {"x": [-Infinity]}}', "invalid JSON: -Infinity .*finite"),
    (b'{"id": "a", "text": "hi", "meta": {"x": 1e400}}', "meta: .*finite"),
    (b'{"id": "   ", "text": "hi"}', "id: .*id is blank"),
    (b'{"id": "a\\u0000b", "text": "hi"}', "id: .*control character"),
    (b'{"id": "a\\nb", "text": "hi"}', "id: .*control character"),
    (b'{"id": "a\\u0085", "text": "hi"}', "id: .*control character"),
    (b'{"id": "a", "text": "hi", "meta": ' + b'{"a": ' * 40 + b"1" + b"}" * 40 + b"}", "meta: .*nested"),
    (b'{"id": "a", "text": "hi", "meta": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", "invalid JSON: nested"),
])
def test_lax_coercions_and_ambiguous_json_are_refused(payload, reason):
    with pytest.raises(MessageError, match=reason):
        parse(Sample, payload)


def test_the_strict_edge_still_reads_what_the_contract_allows():
    sample = parse(Sample, b'{"v": 1, "id": "a b", "text": "hi", "label": 0, "produced_at": 1700000000, '
                           b'"meta": {"n": 1.5, "tags": ["x"], "deep": {"k": {"j": null}}}}')
    assert sample.produced_at == 1_700_000_000.0 and isinstance(sample.produced_at, float)  # an int where a float goes
    assert sample.meta["deep"] == {"k": {"j": None}} and sample.id == "a b"
    # messages built in code (the router, the workers, the tests) keep working, enums from their names included
    routed = Routed(**sample.__dict__, tier="edge", pool=1, distances=[0.5, None], centroid_version=0, router="r")
    assert parse(Routed, routed.to_bytes()) == routed
    letter = DeadLetter.for_record("router", Record("t", 0, 5, b"a", b'{"id": "a", "id": "b"}'), "duplicate key")
    assert parse(DeadLetter, letter.to_bytes()) == letter


@pytest.mark.parametrize("kind", [Sample, Routed])
def test_a_record_whose_key_is_not_its_message_id_is_refused(kind):
    """The stage passes the record's key; a message saying another id than its key is dead-lettered."""
    message = Routed(id="a", text="hi", tier="edge", pool=1, distances=[], centroid_version=0, router="r")
    value = message.to_bytes() if kind is Routed else Sample(id="a", text="hi").to_bytes()
    assert parse(kind, value, key=b"a").id == "a"
    assert parse(kind, value).id == "a"  # no key (a producer that keys nothing): nothing to compare
    with pytest.raises(MessageError, match="the record's key says 'b', the message id 'a'"):
        parse(kind, value, key=b"b")
    with pytest.raises(MessageError, match="the record's key says '\\\\xff', the message id 'a'"):
        parse(kind, value, key=b"\xff")
    letter = DeadLetter.for_record("router", Record("t", 0, 5, b"k", b"{"), "invalid JSON")
    assert parse(DeadLetter, letter.to_bytes(), key=b"k") == letter  # a dead letter has no id: keyed by the original
