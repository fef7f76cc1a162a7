"""workers stage of the dimee stream."""
