"""Centroid state shared by routers: Redis in production, in-memory for the embedded default and unit tests."""

from state.base import CentroidSnapshot, CentroidStore, NotSeeded, open_store

__all__ = ["CentroidSnapshot", "CentroidStore", "NotSeeded", "open_store"]
