"""A transactional request kafka-python does not answer in time stays in flight: the Unanswered it raises can
wait longer for its answer, a success or the request's own error (a transaction's commit may yet take effect
after its coordinator's broker came back)."""

from __future__ import annotations

import threading

import pytest
from kafka import errors as kafka_errors

from dimee.common.errors import DeliveryError, Unanswered
from dimee.streaming.transport.kafka import _within


def _answers_when(released: threading.Event, error: Exception | None = None):
    def request() -> None:
        released.wait(30)
        if error is not None:
            raise error

    return request


def test_a_late_success_is_waited_for():
    released = threading.Event()
    with pytest.raises(Unanswered) as unanswered:
        _within(0.05, _answers_when(released), "commit")
    with pytest.raises(Unanswered):
        unanswered.value.wait(0.05)  # still in flight
    released.set()
    unanswered.value.wait(10)  # returns: the commit took effect


def test_a_late_error_is_a_delivery_error_that_names_it():
    released = threading.Event()
    with pytest.raises(Unanswered) as unanswered:
        _within(0.05, _answers_when(released, kafka_errors.InvalidTxnStateError("aborted")), "commit")
    released.set()
    with pytest.raises(DeliveryError, match="late, with an error") as late:
        unanswered.value.wait(10)
    assert not isinstance(late.value, Unanswered)


def test_an_answer_in_time_is_the_request_own_error_for_the_caller_to_sort():
    answered = threading.Event()
    answered.set()
    with pytest.raises(kafka_errors.InvalidTxnStateError):
        _within(10, _answers_when(answered, kafka_errors.InvalidTxnStateError("aborted")), "commit")
