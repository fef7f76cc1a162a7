"""Errors a user can act on: the CLI prints their message on one line instead of a traceback."""

from __future__ import annotations

from collections.abc import Callable

# The exit status of a command that ended on a DimeeError or a usage error (click's own status for those): what
# the user must fix, which running the command again cannot. A supervisor (`dimee up`) stops rather than restart
# a role that exits with it; any other non-zero status (a crash, a signal, a stuck poll's 70) is restarted.
USER_ERROR_EXIT = 2


class DimeeError(Exception):
    """A problem with the user's input or environment, explained in one line."""


class DataError(DimeeError):
    """A dataset could not be fetched, found or parsed."""


class ServiceUnavailable(DimeeError):
    """A broker or state store could not be reached (or answers without what it must hold)."""

    service: str | None = None  # names the service in metrics where the caller's name would not say it


class DeliveryError(ServiceUnavailable):
    """A send was not acknowledged by the broker; the caller must not commit. `failures` lists (index of the
    send since the last flush, its error) where they are known; `held`, the indexes of sends the client still
    holds and may yet deliver (never to be sent again: the next flush waits for them)."""

    def __init__(self, message: str, failures: list[tuple[int, Exception]] | None = None,
                 held: list[int] | None = None) -> None:
        super().__init__(message)
        self.failures = failures or []
        self.held = held or []


class Unanswered(DeliveryError):
    """A request Kafka did not answer in time: its outcome is unknown (a transaction's commit may yet take effect).
    `wait(seconds)` waits that much longer for the answer, where the request is still in flight: it returns once
    the request succeeded, raises DeliveryError if it failed, or Unanswered again."""

    def __init__(self, message: str, answer: Callable[[float], None] | None = None) -> None:
        super().__init__(message)
        self._answer = answer

    def wait(self, seconds: float) -> None:
        if self._answer is None:
            raise self
        self._answer(seconds)


class Fenced(DimeeError):
    """Another instance with this stage's transactional id has started: this one is a zombie and must stop."""


class Rebalanced(DimeeError):
    """The consumer group moved on (a rebalance) before a transaction committed: the batch was aborted and
    its records go to whichever member owns their partitions now."""


class Refused(DimeeError):
    """The broker refuses this record for good (too large, invalid, not authorised): sending it again cannot
    help."""
