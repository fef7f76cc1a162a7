"""state stage of the dimee stream."""
