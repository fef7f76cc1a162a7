"""What every part of dimee shares and nothing else: user-facing errors, the closed sets of option values, atomic
file writes and the layout of a work folder."""
