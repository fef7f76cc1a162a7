"""Message validation: every malformed payload becomes one readable reason."""

import pytest

from dimee.messages import DeadLetter, MessageError, Prediction, Routed, Sample, envelope, parse
from dimee.transport.base import Record


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
    from dimee.messages import DEFAULT_MAX_TEXT_CHARS

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
