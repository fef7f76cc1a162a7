"""dimee: early-exit inference routed across mobile, edge and cloud tiers before any layer runs."""

__version__ = "0.1.0"
