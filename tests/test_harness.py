"""The test run itself: Ctrl-C and SIGTERM stop it whatever a test installed (tests/conftest.py), and deadlines
stretch with the machine (tests/support/deadlines.py). The two signal tests run in this order, in one process."""

from __future__ import annotations

import signal

import pytest

from dimee.streaming.runtime import StopFlag

AT_COLLECTION = {number: signal.getsignal(number) for number in (signal.SIGINT, signal.SIGTERM)}


def test_a_role_stop_flag_takes_over_sigint_and_sigterm():
    StopFlag().install_signal_handlers()  # as every role does at start, and leaves in place until it exits
    assert all(signal.getsignal(number) is not handler for number, handler in AT_COLLECTION.items())


def test_the_next_test_finds_the_run_s_own_handlers_again():
    """Defect: a CLI command run in the test process (tests/cli) installed its role's handlers and failed; they
    stayed, and pytest ignored Ctrl-C and SIGTERM for the rest of `make test`."""
    assert {number: signal.getsignal(number) for number in AT_COLLECTION} == AT_COLLECTION


def test_the_factor_never_shortens_a_deadline(monkeypatch):
    import importlib

    from tests.support import deadlines

    try:
        monkeypatch.setenv(deadlines.ENV, "0.5")
        assert importlib.reload(deadlines).scaled(30.0) >= 30.0
        monkeypatch.setenv(deadlines.ENV, "3")
        assert importlib.reload(deadlines).scaled(30.0) >= 90.0
        monkeypatch.setenv(deadlines.ENV, "three")
        with pytest.raises(ValueError, match=deadlines.ENV):
            importlib.reload(deadlines)
    finally:
        monkeypatch.undo()
        importlib.reload(deadlines)
