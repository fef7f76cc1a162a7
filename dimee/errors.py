"""Errors a user can act on: the CLI prints their message on one line instead of a traceback."""


class DimeeError(Exception):
    """A problem with the user's input or environment, explained in one line."""


class DataError(DimeeError):
    """A dataset could not be fetched, found or parsed."""


class ServiceUnavailable(DimeeError):
    """A broker or state store could not be reached."""
