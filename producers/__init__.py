"""producers stage of the dimee stream."""
