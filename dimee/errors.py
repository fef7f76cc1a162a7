"""Errors a user can act on: the CLI prints their message on one line instead of a traceback."""


class DimeeError(Exception):
    """A problem with the user's input or environment, explained in one line."""


class DataError(DimeeError):
    """A dataset could not be fetched, found or parsed."""


class ServiceUnavailable(DimeeError):
    """A broker or state store could not be reached."""


class Fenced(DimeeError):
    """Another instance with this stage's transactional id has started: this one is a zombie and must stop."""


class Rebalanced(DimeeError):
    """The consumer group moved on (a rebalance) before a transaction committed: the batch was aborted and
    its records go to whichever member owns their partitions now."""
