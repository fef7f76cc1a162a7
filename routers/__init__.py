"""routers stage of the dimee stream."""
